"""The input gate: is this image like the chest X-rays the model was trained on?

Detector: Mahalanobis distance (Ledoit-Wolf shrinkage) on feature statistics of the network's own
VGG16 base: the mean and standard deviation of each channel of the last convolution of every block
(2,944 numbers, log1p-compressed). Why this one: the statistics of early blocks describe texture and
contrast (what sets a radiograph apart from a chart, a photograph or an MR slice), those of late blocks
describe content; Mahalanobis on several layers is Lee et al.'s detector (NeurIPS 2018), and the
shrinkage makes a covariance usable from a few dozen training images. A k-NN distance on the pooled
features alone refused 73% of the offline OOD set against this detector's 98% (bench/ood_detectors.py).
The detector ships in the model folder (ood.npz) as the training mean, the shrinkage floor and the
leading eigenvectors of the covariance (a few MB at most, whatever the training set's size).

Threshold: the `ood.quantile` quantile (default 0.99) of in-distribution scores that the detector did not
see: training images scored by detectors fitted on the other folds (`ood.folds`) plus the validation
split, read from a log-normal fit (stable with few images) and never below the empirical quantile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm
from sklearn.covariance import ledoit_wolf_shrinkage

from cxr.model.block_stats import FEATURE_LAYERS

OOD_FILE = "ood.npz"
METHOD = "mahalanobis-ledoit-wolf on per-channel mean/std of VGG16 blocks 1-5"


@dataclass
class InputGate:
    mean: np.ndarray  # (d,)
    floor: float  # the shrinkage term: variance added in every direction
    vectors: np.ndarray  # (d, r) leading eigenvectors of the shrunk covariance's data part
    values: np.ndarray  # (r,) their eigenvalues (data part, after shrinkage)
    threshold: float
    quantile: float
    n_train: int
    reference_scores: np.ndarray  # the held-out in-distribution scores the threshold was read from
    shift_quantile: float = 0.0  # the shift warning: this empirical quantile of reference_scores (0: none)

    @property
    def shift_threshold(self) -> float:
        """Above this score an accepted image is flagged as unlike the training source's films (the
        shift warning); its false-alarm rate on held-out same-source films is 1 - shift_quantile."""
        if not self.shift_quantile or not len(self.reference_scores):
            return float("inf")
        return float(np.quantile(self.reference_scores, self.shift_quantile))

    def shifted(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score is past the shift warning's threshold."""
        return np.asarray(scores) > self.shift_threshold

    @classmethod
    def fit(cls, features: np.ndarray, max_components: int = 256) -> InputGate:
        """Ledoit-Wolf shrunk covariance of `features`, kept as floor * I + V diag(values) V^T."""
        x = np.asarray(features, np.float64)
        mean = x.mean(axis=0)
        centered = x - mean
        shrinkage = float(ledoit_wolf_shrinkage(centered, assume_centered=True))
        # eigen-decomposition of the empirical covariance through the SVD of the (n x d) data
        _, singular, vt = np.linalg.svd(centered, full_matrices=False)
        eig = singular**2 / len(x)
        floor = shrinkage * float(eig.sum()) / x.shape[1]  # shrinkage * trace / d
        r = int(min(max_components, np.count_nonzero(eig > 1e-12)))
        return cls(mean, max(floor, 1e-12), vt[:r].T, (1 - shrinkage) * eig[:r], np.inf, 0.0, len(x), np.zeros(0))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row under the shrunk covariance (Woodbury on the low-rank part)."""
        z = np.asarray(features, np.float64) - self.mean
        projected = z @ self.vectors
        squared = (z * z).sum(axis=1) / self.floor - (
            projected**2 * (self.values / (self.floor * (self.floor + self.values)))
        ).sum(axis=1)
        return np.sqrt(np.maximum(squared, 0.0))

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / OOD_FILE
        np.savez(
            path,
            mean=self.mean.astype(np.float32),
            vectors=self.vectors.astype(np.float32),
            values=self.values.astype(np.float64),
            reference_scores=self.reference_scores,
            meta=np.array(json.dumps(self.summary())),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> InputGate:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                data["mean"].astype(np.float64),
                float(meta["floor"]),
                data["vectors"].astype(np.float64),
                data["values"],
                float(meta["threshold"]),
                float(meta["quantile"]),
                int(meta["n_train"]),
                data["reference_scores"],
                float(meta.get("shift_quantile", 0.0)),
            )

    def summary(self) -> dict:
        return {
            "method": METHOD,
            "layers": list(FEATURE_LAYERS),
            "threshold": float(self.threshold),
            "quantile": float(self.quantile),
            "shift_quantile": float(self.shift_quantile),
            "shift_threshold": float(self.shift_threshold),
            "floor": float(self.floor),
            "components": int(self.vectors.shape[1]),
            "n_train": int(self.n_train),
            "n_reference": int(len(self.reference_scores)),
        }


def choose_threshold(reference: np.ndarray, quantile: float) -> float:
    """The `quantile` of held-out in-distribution scores: log-normal fit, never below the empirical one."""
    scores = np.asarray(reference, np.float64)
    empirical = float(np.quantile(scores, quantile))
    if len(scores) < 3:
        return empirical
    logs = np.log(np.maximum(scores, 1e-12))
    return max(float(np.exp(logs.mean() + norm.ppf(quantile) * logs.std(ddof=1))), empirical)


def fit_gate(
    train_features: np.ndarray,
    val_features: np.ndarray,
    quantile: float = 0.99,
    folds: int = 4,
    max_components: int = 256,
    seed: int = 0,
    shift_quantile: float = 0.0,
) -> InputGate:
    """Fit on all training features; threshold from cross-fitted training scores plus validation scores."""
    train = np.asarray(train_features, np.float64)
    order = np.random.default_rng(seed).permutation(len(train))
    folds = max(2, min(folds, len(train)))
    held_out = []
    for k in range(folds):
        hold = order[k::folds]
        rest = np.setdiff1d(order, hold)
        if len(rest) >= 2 and len(hold):
            held_out.append(InputGate.fit(train[rest], max_components).score(train[hold]))
    gate = InputGate.fit(train, max_components)
    reference = np.concatenate(held_out + [gate.score(val_features)]) if len(val_features) else np.concatenate(held_out)
    gate.reference_scores = reference
    gate.quantile = quantile
    gate.shift_quantile = shift_quantile
    gate.threshold = choose_threshold(reference, quantile)
    return gate
