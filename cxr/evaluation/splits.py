"""A split scored by a classifier: its probabilities and features, its evaluation report (metrics with
intervals, confusion matrix, ROC, calibration, plots), and the input gate on the offline non-X-ray set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr.data.images import decode_image
from cxr.data.manifest import labels_of
from cxr.evaluation.metrics import (
    bootstrap_ci,
    calibration,
    compute_metrics,
    confusion_matrix_table,
    predictive_values,
    roc_points,
)
from cxr.evaluation.plots import plot_confusion, plot_reliability, plot_roc
from cxr.safety.ood_set import build_ood_set


def _split_arrays(frame, dataset_dir) -> list[np.ndarray]:
    return [decode_image((Path(dataset_dir) / f).read_bytes(), f)[0] for f in frame["file"]]


def split_batches(frame, dataset_dir, batch: int = 32):
    """The decoded images of a manifest split, `batch` at a time."""
    for start in range(0, len(frame), batch):
        yield _split_arrays(frame.iloc[start : start + batch], dataset_dir)


def assess_split(classifier, frame, dataset_dir, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, input-gate features) for the rows of a manifest split, in batches."""
    parts = [classifier.assess_arrays(arrays) for arrays in split_batches(frame, dataset_dir, batch)]
    if not parts:
        return np.zeros(0), np.zeros((0, 0))
    return np.concatenate([p for p, _ in parts]), np.concatenate([f for _, f in parts])


def predict_split(classifier, frame, dataset_dir) -> np.ndarray:
    """Probabilities for the rows of a manifest split, through the model's own preprocessing."""
    return assess_split(classifier, frame, dataset_dir)[0]


def split_features(classifier, frame, dataset_dir, batch: int = 32) -> np.ndarray:
    """The input gate's features for the rows of a manifest split (no probabilities computed)."""
    parts = [classifier.features_of(arrays) for arrays in split_batches(frame, dataset_dir, batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def evaluate_split(
    classifier,
    frame,
    dataset_dir,
    split: str,
    out_dir: Path,
    bootstrap_samples: int = 1000,
    prevalence: float = 0.1,
    probability=None,
    source: str = "",
) -> dict:
    """Metrics (with bootstrap CIs), PPV/NPV at `prevalence`, the input gate's acceptance, confusion
    matrix, ROC, calibration and plots for one split; writes <split>_*.png/json. The metrics cover every
    image of the split, accepted by the gate or not (`ood_accept_rate` says how many it accepted).

    `probability` given (the out-of-fold predictions of cross-validation, row for row): the metrics are
    of those, not of `classifier`'s; `source` says where the figures come from."""
    positive = classifier.config.positive_class
    negative = classifier.config.negative_class
    y_true = labels_of(frame, positive)
    if probability is None:
        probability, features = assess_split(classifier, frame, dataset_dir)
    else:
        probability, features = np.asarray(probability, np.float64), split_features(classifier, frame, dataset_dir)
    metrics = compute_metrics(y_true, probability, classifier.config.threshold)
    metrics["prevalence"] = float(prevalence)
    metrics["ppv"], metrics["npv"] = predictive_values(metrics["sensitivity"], metrics["specificity"], prevalence)
    scores = classifier.ood_scores(features)
    if classifier.gate is not None and len(scores):
        metrics["ood_accept_rate"] = float(classifier.gate.accepts(scores).mean())
        metrics["shift_warn_rate"] = float(classifier.shift_flags(features).mean())  # false alarms: same source
    if getattr(classifier, "scope", None) is not None and len(features):
        metrics["scope_accept_rate"] = float(classifier.scope.accepts(classifier.scope_scores(features)).mean())
    table = confusion_matrix_table(metrics, negative, positive)
    points = roc_points(y_true, probability)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(table, f"{split}: confusion matrix (positive = {positive})", out_dir / f"{split}_confusion.png")
    plot_roc(points, metrics["roc_auc"], f"{split}: ROC (positive = {positive})", out_dir / f"{split}_roc.png")
    cal = calibration(y_true, probability)
    metrics["ece"] = cal["ece"]
    plot_reliability(cal, f"{split}: reliability", out_dir / f"{split}_reliability.png")
    ci = bootstrap_ci(y_true, probability, metrics["threshold"], bootstrap_samples)
    report = {
        "split": split,
        "source": source or f"the {len(frame)} images of the {split} split, scored by the model",
        "positive_class": positive,
        "negative_class": negative,
        "metrics": metrics,
        "confusion_matrix": table,
        "ci95": ci,
        "calibration": cal,
        "roc": points,
        "predictions": [
            {"source": s, "label": lab, "probability": float(p), "ood_score": float(o) if np.isfinite(o) else None}
            for s, lab, p, o in zip(frame["source"], frame["label"], probability, scores, strict=True)
        ],
    }
    (out_dir / f"{split}_report.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate_ood_set(classifier, out_dir: Path, seed: int = 0) -> dict:
    """The input gate on the offline out-of-distribution set (cxr/safety/ood_set.py): the share refused, in
    all and by kind, and every image's score; writes ood_report.json. Empty for a model without a gate."""
    if classifier.gate is None:
        return {}
    images = build_ood_set(seed)
    features = [
        classifier.features_of([i.array for i in images[start : start + 16]]) for start in range(0, len(images), 16)
    ]
    score = classifier.ood_scores(np.concatenate(features))
    refused = ~classifier.gate.accepts(score)
    kinds = sorted({image.kind.split(":")[0] for image in images})
    report = {
        "threshold": float(classifier.gate.threshold),
        "detector": classifier.gate.summary(),
        "n": len(images),
        "reject_rate": float(refused.mean()),
        "reject_rate_by_kind": {
            kind: float(np.mean([r for image, r in zip(images, refused, strict=True) if image.kind.startswith(kind)]))
            for kind in kinds
        },
        "images": [
            {"name": image.name, "kind": image.kind, "score": float(s), "refused": bool(r)}
            for image, s, r in zip(images, score, refused, strict=True)
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ood_report.json").write_text(json.dumps(report, indent=2))
    return report
