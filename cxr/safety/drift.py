"""Drift detection: has the population of images a model sees moved away from the one it was trained on?

Representation: the input gate's features (cxr/safety/input_gate.py: per-channel mean and std of the five
VGG16 blocks, computed in the same pass as the probability), standardised and projected on their
leading principal components over the training split (`ood.drift_components`, at most 32 numbers per
image). The projection and the training split's projected rows (the reference) ship with the model as
drift.npz; the web app keeps each prediction's projection (cxr/serving/records.py), never the image.

Test: the energy-distance two-sample test of hyppo (`hyppo.ksample.Energy`, Székely & Rizzo), a test of
equal multivariate distributions, with hyppo's chi-square approximation of its null distribution
(Shen & Vogelstein 2021) for the p-value. One statistic and one p-value for the whole projection:
no per-feature tests to correct for multiplicity, and it sees a shift in any direction or in spread.
Drift is declared at p < `monitor.drift_alpha`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxr.errors import CxrError

DRIFT_FILE = "drift.npz"
MAX_COMPONENTS = 32  # the records keep at most this many numbers per prediction
MAX_REFERENCE_ROWS = 2000
METHOD = "energy-distance two-sample test (hyppo.ksample.Energy, chi-square approximation)"
REPRESENTATION = "principal components of the input gate's standardised VGG16 block statistics (training split)"


@dataclass
class DriftReference:
    mean: np.ndarray  # (d,) feature means over the training split
    scale: np.ndarray  # (d,) their standard deviations
    components: np.ndarray  # (d, k) the leading principal directions of the standardised features
    reference: np.ndarray  # (n, k) the training split's projected rows
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, features: np.ndarray, components: int = 16, seed: int = 0) -> DriftReference:
        x = np.asarray(features, np.float64)
        if len(x) < 3:
            raise CxrError(f"The drift reference needs at least 3 training images; the training split has {len(x)}.")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        z = (x - mean) / scale
        k = int(min(max(1, components), MAX_COMPONENTS, len(x) - 1, x.shape[1]))
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        explained = singular**2 / float((singular**2).sum())
        ref = cls(mean, scale, vt[:k].T, np.zeros((0, k)))
        rows = ref.project(x)
        if len(rows) > MAX_REFERENCE_ROWS:
            rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), MAX_REFERENCE_ROWS, replace=False))]
        ref.reference = rows
        ref.meta = {
            "method": METHOD,
            "representation": REPRESENTATION,
            "components": k,
            "explained_variance": round(float(explained[:k].sum()), 4),
            "n_reference": int(len(rows)),
            "n_train": int(len(x)),
        }
        return ref

    def project(self, features: np.ndarray) -> np.ndarray:
        """The gate's features (n, d) -> their projection (n, k)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise CxrError(
                f"Features of width {x.shape[-1] if x.ndim else 0} do not match this drift reference's "
                f"{self.mean.size}; the reference belongs to another model."
            )
        return (x - self.mean) / self.scale @ self.components

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / DRIFT_FILE
        np.savez(
            path,
            mean=self.mean,
            scale=self.scale,
            components=self.components.astype(np.float32),
            reference=self.reference.astype(np.float32),
            meta=np.array(json.dumps(self.meta)),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> DriftReference:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["mean"],
                data["scale"],
                data["components"].astype(np.float64),
                data["reference"].astype(np.float64),
                json.loads(str(data["meta"])),
            )


@dataclass
class DriftVerdict:
    drift: bool
    statistic: float  # the energy statistic
    p_value: float
    alpha: float
    n: int  # images tested
    n_reference: int
    components: int
    method: str = METHOD
    model_version: str = ""
    report: str = ""

    def line(self) -> str:
        what = "DRIFT" if self.drift else "no drift"
        version = f" (model version {self.model_version})" if self.model_version else ""
        return (
            f"{what}: {self.n} images against {self.n_reference} training images{version}, energy statistic "
            f"{self.statistic:.4f}, p = {self.p_value:.2g} ({'<' if self.drift else '>='} alpha {self.alpha:g})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def detect(reference: DriftReference, current: np.ndarray, alpha: float = 0.01, min_n: int = 30) -> DriftVerdict:
    """Test projected rows `current` (n, k) against the reference's training rows."""
    from hyppo.ksample import Energy  # numba-compiled: imported when a test runs, not with the CLI

    rows = np.asarray(current, np.float64)
    if rows.ndim != 2 or rows.shape[1] != reference.reference.shape[1]:
        raise CxrError(
            f"The rows to test have {rows.shape[-1] if rows.ndim == 2 else 0} numbers each, the model's drift "
            f"reference {reference.reference.shape[1]}: they were recorded with another model version."
        )
    if len(rows) < min_n:
        raise CxrError(
            f"Only {len(rows)} images to test; a drift verdict needs at least {min_n} "
            "(monitor.drift_min_n): test a larger batch or a longer --since."
        )
    statistic, p_value = Energy().test(reference.reference, rows, auto=True)
    p_value = float(np.clip(p_value, 0.0, 1.0))
    return DriftVerdict(
        drift=bool(p_value < alpha),
        statistic=float(statistic),
        p_value=p_value,
        alpha=float(alpha),
        n=int(len(rows)),
        n_reference=int(len(reference.reference)),
        components=int(rows.shape[1]),
    )
