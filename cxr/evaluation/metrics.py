"""The metrics: one registry of what each metric is, and their values from labels and probabilities.

`METRICS` is the one list of the evaluation metrics (name, direction, whether a bootstrap interval is
recorded, how it is displayed). Evaluation, cross-validation, the step logging, the model card, the run
result and the compare view read it; a new metric is one entry here plus its formula in
`compute_metrics`. MLflow holds each split's metrics flat (`val_f1`, `val_f1_ci_low`, `val_f1_ci_high`);
`figure` turns them back into `{value, ci_low, ci_high}`.

Values: the positive class is label 1; confusion counts, F1 and the rest, ROC points, PPV/NPV at a
stated prevalence, bootstrap intervals, calibration error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

EPS = 1e-7


@dataclass(frozen=True)
class Metric:
    name: str  # the key in compute_metrics' result and, prefixed with the split, in MLflow
    title: str  # how people read it
    higher_is_better: bool | None  # None: neither (a setting, a count)
    interval: bool = False  # a bootstrap 95% interval is recorded (name_ci_low, name_ci_high)
    cross_validated: bool = False  # reported as mean ± sd over the folds with evaluate.cv_folds
    compared: bool = False  # shown by `cxr registry compare`
    digits: int = 3

    def format(self, value) -> str:
        number = as_number(value)
        return "n/a" if number is None else f"{number:.{self.digits}f}"


METRICS = {
    m.name: m
    for m in (
        Metric("f1", "F1", True, interval=True, cross_validated=True, compared=True),
        Metric("accuracy", "accuracy", True, interval=True, cross_validated=True, compared=True),
        Metric("sensitivity", "sensitivity", True, interval=True, cross_validated=True, compared=True),
        Metric("specificity", "specificity", True, interval=True, cross_validated=True, compared=True),
        Metric("precision", "precision", True, compared=True),
        Metric("roc_auc", "ROC AUC", True, cross_validated=True, compared=True),
        Metric("bce", "binary cross-entropy", False, cross_validated=True, compared=True, digits=4),
        Metric("ece", "expected calibration error", False),
        Metric("ppv", "PPV at the stated prevalence", True),
        Metric("npv", "NPV at the stated prevalence", True),
        Metric("threshold", "decision threshold", None, compared=True, digits=4),
    )
}
INTERVAL_METRICS = tuple(n for n, m in METRICS.items() if m.interval)
CV_METRICS = tuple(n for n, m in METRICS.items() if m.cross_validated)
COMPARED_METRICS = tuple(n for n, m in METRICS.items() if m.compared)
CARD_METRICS = tuple(n for n in METRICS if n != "threshold")  # the card states the threshold on its own
CONFUSION_KEYS = ("tp", "fn", "fp", "tn")


def as_number(value) -> float | None:
    """A finite float, or None (missing, not a number, NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def figure(flat: dict, key: str) -> dict:
    """A metric with its interval from MLflow's flat metrics: `key` (e.g. "val_f1") ->
    {"value", "ci_low", "ci_high"}, None where not recorded."""
    return {
        "value": as_number(flat.get(key)),
        "ci_low": as_number(flat.get(f"{key}_ci_low")),
        "ci_high": as_number(flat.get(f"{key}_ci_high")),
    }


def format_figure(fig: dict | None, digits: int = 2, interval: str = "[{low}, {high}]") -> str:
    """ "0.93 [0.86, 0.98]" (or the point alone without an interval; "n/a" without a value)."""
    if not fig or fig.get("value") is None:
        return "n/a"
    text = f"{fig['value']:.{digits}f}"
    if fig.get("ci_low") is None or fig.get("ci_high") is None:
        return text
    low, high = f"{fig['ci_low']:.{digits}f}", f"{fig['ci_high']:.{digits}f}"
    return f"{text} " + interval.format(low=low, high=high)


def flat_with_intervals(metrics: dict, ci95: dict) -> dict:
    """A report's metrics with its intervals added as name_ci_low / name_ci_high (how MLflow holds them)."""
    out = dict(metrics)
    for name, (low, high) in ci95.items():
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Counts with the positive class as 1."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {
        "tp": int(((y_true == 1) & (y_pred == 1)).sum()),
        "fn": int(((y_true == 1) & (y_pred == 0)).sum()),
        "fp": int(((y_true == 0) & (y_pred == 1)).sum()),
        "tn": int(((y_true == 0) & (y_pred == 0)).sum()),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def compute_metrics(y_true, probability, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall (sensitivity), specificity, F1, binary cross-entropy, ROC-AUC.

    F1, precision and recall treat label 1 (the positive class) as positive, as the paper does.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    c = confusion(y_true, probability >= threshold)
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    p = np.clip(probability, EPS, 1 - EPS)
    bce = float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))) if len(p) else float("nan")
    auc = float(roc_auc_score(y_true, probability)) if len(set(y_true)) == 2 else float("nan")
    return {
        "accuracy": _ratio(c["tp"] + c["tn"], len(y_true)),
        "precision": precision,
        "recall": recall,
        "sensitivity": recall,
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "bce": bce,
        "roc_auc": auc,
        "threshold": float(threshold),
        "n": int(len(y_true)),
        **{k: int(v) for k, v in c.items()},
    }


def confusion_matrix_table(metrics: dict, negative: str, positive: str) -> dict:
    """Rows = true class, columns = predicted class, positive first (the paper's layout)."""
    return {
        "labels": [positive, negative],
        "matrix": [[metrics["tp"], metrics["fn"]], [metrics["fp"], metrics["tn"]]],
    }


def roc_points(y_true, probability) -> dict:
    if len(set(np.asarray(y_true).astype(int))) < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = roc_curve(y_true, probability)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn puts +inf first
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV) at a stated prevalence of the positive class (Bayes' rule), not at the split's own mix."""
    true_pos, false_pos = sensitivity * prevalence, (1 - specificity) * (1 - prevalence)
    true_neg, false_neg = specificity * (1 - prevalence), (1 - sensitivity) * prevalence
    return _ratio(true_pos, true_pos + false_pos), _ratio(true_neg, true_neg + false_neg)


def bootstrap_ci(
    y_true, probability, threshold: float, samples: int = 1000, seed: int = 0, metrics=INTERVAL_METRICS
) -> dict:
    """Percentile bootstrap 95% intervals: {metric: [low, high]} (resampling images with replacement)."""
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in metrics}
    n = len(y_true)
    for _ in range(samples if n else 0):
        idx = rng.integers(0, n, n)
        values = compute_metrics(y_true[idx], probability[idx], threshold)
        for m in metrics:
            draws[m].append(values[m])
    return {
        m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
        for m, v in draws.items()
    }


def calibration(y_true, probability, bins: int = 10) -> dict:
    """Expected calibration error and the reliability-diagram points (equal-width bins)."""
    y_true = np.asarray(y_true).astype(float)
    probability = np.asarray(probability, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        confidence, observed = float(probability[mask].mean()), float(y_true[mask].mean())
        ece += mask.mean() * abs(confidence - observed)
        rows.append({"bin": b, "count": int(mask.sum()), "mean_probability": confidence, "observed_rate": observed})
    return {"ece": float(ece), "bins": rows}
