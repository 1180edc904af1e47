"""The population scope check: is this an adult's chest X-ray? The model is for adults; children's chest
X-rays are refused, whatever the classifier would say about them.

Method: L2-regularised logistic regression on the input gate's features (cxr/safety/input_gate.py: per-channel mean
and std of the VGG16 base's five blocks, which the scorer computes anyway: no extra pass), fitted with
the training split's adult X-rays as one class and a reference set of children's normal chest X-rays as
the other (`cxr/safety/scope_reference/pediatric-normal/`, 100 images, never used to train the COVID
classifier). Threshold: the `scope.accept_quantile` quantile of cross-fitted adult scores, so that about
that share of adults is accepted. Refusal of children is measured on cross-fitted scores too (each child
scored by a check fitted without it). Limit: every reference child comes from one hospital's
pediatric set (Kermany et al., Guangzhou): children from elsewhere may look different to it.

Saved next to the model as scope.npz (arrays and JSON, no pickle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from cxr.data.images import decode_image
from cxr.errors import CxrError

SCOPE_FILE = "scope.npz"
REFERENCE_DIR = Path(__file__).resolve().parent / "scope_reference" / "pediatric-normal"
POPULATION = "adults"
METHOD = "logistic regression (L2) on the input gate's VGG16 block statistics: adults vs children's chest X-rays"


def reference_images(folder: str | Path = "") -> list[Path]:
    """The out-of-scope reference images (the bundled children's X-rays unless `folder` names others)."""
    root = Path(folder) if folder else REFERENCE_DIR
    files = sorted(p for p in root.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    if not files:
        raise CxrError(f"The scope reference folder {root} holds no images; set scope.reference_dir or reinstall cxr.")
    return files


def reference_features(classifier, files: list[Path], batch: int = 32) -> np.ndarray:
    """The input gate's features of `files`, decoded as uploads are (cxr/data/images.py)."""
    parts = []
    for start in range(0, len(files), batch):
        arrays = [decode_image(f.read_bytes(), str(f))[0] for f in files[start : start + batch]]
        parts.append(classifier.features_of(arrays))
    return np.concatenate(parts)


@dataclass
class ScopeCheck:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    meta: dict

    @classmethod
    def fit_model(cls, adults: np.ndarray, others: np.ndarray, c: float) -> ScopeCheck:
        x = np.concatenate([adults, others]).astype(np.float64)
        y = np.r_[np.zeros(len(adults)), np.ones(len(others))]
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit((x - mean) / scale, y)
        return cls(mean, scale, clf.coef_[0], float(clf.intercept_[0]), np.inf, {})

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probability that each image is out of scope (a child's X-ray)."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def accepts(self, scores) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def refusal(self, score: float) -> str:
        return (
            f"out of scope: the image looks like a child's chest X-ray (scope score {score:.2f} > threshold "
            f"{self.threshold:.2f}); this model is for {POPULATION} only"
        )

    def summary(self) -> dict:
        return {"method": METHOD, "population": POPULATION, "threshold": float(self.threshold), **self.meta}

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / SCOPE_FILE
        np.savez(
            path,
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            meta=np.array(json.dumps({**self.summary(), "intercept": self.intercept})),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScopeCheck:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            intercept, threshold = float(meta.pop("intercept")), float(meta["threshold"])
            return cls(data["mean"], data["scale"], data["coef"], intercept, threshold, meta)


def fit_scope(
    adults: np.ndarray, others: np.ndarray, accept_quantile: float = 0.98, c: float = 0.1, folds: int = 5, seed: int = 0
) -> ScopeCheck:
    """Fit on all images; threshold from cross-fitted adult scores; children's refusal rate from
    cross-fitted children's scores (stored in the summary as reference_refuse_rate)."""
    x = np.concatenate([adults, others])
    y = np.r_[np.zeros(len(adults)), np.ones(len(others))]
    held = np.zeros(len(x))
    k = int(max(2, min(folds, len(adults), len(others))))
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        fold = ScopeCheck.fit_model(x[train][y[train] == 0], x[train][y[train] == 1], c)
        held[test] = fold.score(x[test])
    check = ScopeCheck.fit_model(adults, others, c)
    check.threshold = float(np.quantile(held[y == 0], accept_quantile))
    check.meta = {
        "accept_quantile": float(accept_quantile),
        "n_adults": int(len(adults)),
        "n_reference": int(len(others)),
        "reference_refuse_rate": float((held[y == 1] > check.threshold).mean()),
        "adult_accept_rate_cross_fitted": float((held[y == 0] <= check.threshold).mean()),
        "reference": "children's normal chest X-rays of the COVID-19 Radiography Database's Normal class "
        "(Kermany et al.'s pediatric set, one hospital)",
    }
    return check
