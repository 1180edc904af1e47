"""Temperature scaling (Guo et al. 2017): one number T that divides the model's logit, fitted on held-out
probabilities by minimising binary cross-entropy. It changes how confident the model says it is, never
which side of a threshold an image falls on relative to another image (the order is kept).

Fitted on the validation split, or on the out-of-fold probabilities with evaluate.cv_folds. Below
`min_per_class` images of either class T stays 1: a temperature fitted on a handful of images moves
wherever they fall, like a threshold does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EPS = 1e-7
# T from 0.05 to 20 on a log grid: wide enough for any network, fine enough (0.5% steps) for ECE
GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 1201))


def logit(probability) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probability, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T); T = 1 returns p unchanged."""
    probability = np.asarray(probability, dtype=np.float64)
    if temperature == 1.0:
        return probability
    return 1.0 / (1.0 + np.exp(-logit(probability) / float(temperature)))


class TemperatureFit(NamedTuple):
    temperature: float
    fitted: bool  # False: too few held-out images, the temperature is 1
    how: str  # a sentence saying how it was chosen


def fit_temperature(y_true, probability, min_per_class: int = 10) -> TemperatureFit:
    """T minimising the cross-entropy of sigmoid(logit / T) on held-out images (1 with too few of them)."""
    y = np.asarray(y_true).astype(int)
    fewest = int(min((y == 1).sum(), (y == 0).sum())) if len(y) else 0
    if fewest < min_per_class:
        return TemperatureFit(
            1.0,
            False,
            f"1 (not fitted): {fewest} held-out images of the smaller class, fewer than "
            f"evaluate.threshold_min_per_class {min_per_class}",
        )
    z = logit(probability)
    p = 1.0 / (1.0 + np.exp(-z[None, :] / GRID[:, None]))
    p = np.clip(p, EPS, 1 - EPS)
    losses = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p), axis=1)
    best = float(GRID[int(np.argmin(losses))])
    return TemperatureFit(best, True, f"{best:.3f}: minimises cross-entropy on {len(y)} held-out images (grid 0.05-20)")
