"""Temperature scaling: recovers a known over-confidence, keeps the order, refuses to fit on a handful."""

import numpy as np
import pytest

from cxr.evaluation.metrics import calibration
from cxr.model.calibration import apply_temperature, fit_temperature


def overconfident(n: int, temperature: float, seed: int = 0):
    """Labels drawn from sigmoid(z / T) and a model that reports sigmoid(z): over-confident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z / temperature))).astype(int)
    return y, 1 / (1 + np.exp(-z))


def test_fit_recovers_the_temperature_and_lowers_the_calibration_error():
    y, p = overconfident(20000, 2.5)
    t, fitted, how = fit_temperature(y, p, min_per_class=10)
    assert fitted and t == pytest.approx(2.5, rel=0.1)
    assert "20000 held-out images" in how
    assert calibration(y, apply_temperature(p, t))["ece"] < calibration(y, p)["ece"] / 3


def test_temperature_keeps_the_order_and_the_midpoint():
    p = np.array([0.01, 0.2, 0.5, 0.7, 0.999])
    q = apply_temperature(p, 3.0)
    assert (np.argsort(q) == np.argsort(p)).all()
    assert q[2] == pytest.approx(0.5)
    assert (np.abs(q - 0.5) < np.abs(p - 0.5) + 1e-12).all()  # T > 1 softens
    assert (apply_temperature(p, 1.0) == p).all()


def test_too_few_images_of_a_class_keeps_temperature_one():
    y, p = overconfident(30, 3.0)
    y[:] = 0
    y[:4] = 1
    t, fitted, how = fit_temperature(y, p, min_per_class=10)
    assert t == 1.0 and not fitted
    assert "4 held-out images of the smaller class" in how
