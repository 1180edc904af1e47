"""Evaluation: metrics with the positive class named, confusion matrix, ROC, plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EPS = 1e-7


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
    from sklearn.metrics import roc_auc_score

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
    from sklearn.metrics import roc_curve

    if len(set(np.asarray(y_true).astype(int))) < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = roc_curve(y_true, probability)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn puts +inf first
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def _axes(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def _save(fig, ax, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(table: dict, title: str, path: Path) -> Path:
    matrix = np.asarray(table["matrix"])
    fig, ax = _axes((3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks([0, 1], table["labels"])
    ax.set_yticks([0, 1], table["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, ax, title, path)


def plot_roc(points: dict, auc: float, title: str, path: Path) -> Path:
    fig, ax = _axes((3.6, 3.4))
    ax.plot(points["fpr"], points["tpr"], label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(loc="lower right")
    return _save(fig, ax, title, path)


def _split_arrays(frame, dataset_dir) -> list[np.ndarray]:
    from cxr.images import decode_image

    return [decode_image((Path(dataset_dir) / f).read_bytes(), f)[0] for f in frame["file"]]


def _split_batches(frame, dataset_dir, batch: int = 32):
    """The decoded images of a manifest split, `batch` at a time."""
    for start in range(0, len(frame), batch):
        yield _split_arrays(frame.iloc[start : start + batch], dataset_dir)


def assess_split(classifier, frame, dataset_dir, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, input-gate features) for the rows of a manifest split, in batches."""
    parts = [classifier.assess_arrays(arrays) for arrays in _split_batches(frame, dataset_dir, batch)]
    if not parts:
        return np.zeros(0), np.zeros((0, 0))
    return np.concatenate([p for p, _ in parts]), np.concatenate([f for _, f in parts])


def predict_split(classifier, frame, dataset_dir) -> np.ndarray:
    """Probabilities for the rows of a manifest split, through the model's own preprocessing."""
    return assess_split(classifier, frame, dataset_dir)[0]


def split_features(classifier, frame, dataset_dir, batch: int = 32) -> np.ndarray:
    """The input gate's features for the rows of a manifest split (no probabilities computed)."""
    parts = [classifier.features_of(arrays) for arrays in _split_batches(frame, dataset_dir, batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV) at a stated prevalence of the positive class (Bayes' rule), not at the split's own mix."""
    true_pos, false_pos = sensitivity * prevalence, (1 - specificity) * (1 - prevalence)
    true_neg, false_neg = specificity * (1 - prevalence), (1 - sensitivity) * prevalence
    return _ratio(true_pos, true_pos + false_pos), _ratio(true_neg, true_neg + false_neg)


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
    from cxr.augment import labels_of

    positive = classifier.config["positive_class"]
    negative = classifier.config["negative_class"]
    y_true = labels_of(frame, positive)
    if probability is None:
        probability, features = assess_split(classifier, frame, dataset_dir)
    else:
        probability, features = np.asarray(probability, np.float64), split_features(classifier, frame, dataset_dir)
    metrics = compute_metrics(y_true, probability, float(classifier.config["threshold"]))
    metrics["prevalence"] = float(prevalence)
    metrics["ppv"], metrics["npv"] = predictive_values(metrics["sensitivity"], metrics["specificity"], prevalence)
    scores = classifier.ood_scores(features)
    if classifier.gate is not None and len(scores):
        metrics["ood_accept_rate"] = float(classifier.gate.accepts(scores).mean())
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


def choose_threshold(
    y_true, probability, strategy: str = "max_f1", target_sensitivity: float = 0.95, fixed: float = 0.5
) -> float:
    """The decision threshold, chosen on validation data.

    Candidates are the midpoints between consecutive distinct probabilities (so rounding never flips a
    validation prediction). max_f1: the candidate with the highest F1, ties to the one closest to 0.5;
    target_sensitivity: the highest candidate whose sensitivity reaches the target; fixed: `fixed`.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    if strategy == "fixed" or len(set(y_true)) < 2:
        return float(fixed)
    distinct = np.unique(np.concatenate([[0.0], probability, [1.0]]))
    candidates = np.unique(np.concatenate([(distinct[:-1] + distinct[1:]) / 2, [fixed]]))
    if strategy == "max_f1":
        scores = [(compute_metrics(y_true, probability, t)["f1"], -abs(t - 0.5), t) for t in candidates]
        return float(max(scores)[2])
    if strategy == "target_sensitivity":
        reaching = [t for t in candidates if compute_metrics(y_true, probability, t)["recall"] >= target_sensitivity]
        return float(max(reaching)) if reaching else float(candidates.min())
    raise ValueError(f"evaluate.threshold_strategy '{strategy}' is not one of fixed, max_f1, target_sensitivity")


def decide_threshold(
    y_true,
    probability,
    strategy: str = "max_f1",
    target_sensitivity: float = 0.95,
    fixed: float = 0.5,
    min_per_class: int = 10,
    prior_images: float = 20.0,
    images: str = "validation",
) -> tuple[float, str]:
    """The decision threshold and a sentence saying how it was chosen.

    A threshold tuned on a handful of images lands wherever those images happen to fall, often at an
    extreme. Below `min_per_class` images of either class the fixed threshold is kept. Above it, a
    max_f1 threshold is shrunk toward `fixed` (0.5) with weight n / (n + prior_images), as if
    `prior_images` images had voted for 0.5; a target_sensitivity threshold is kept as chosen (shrinking
    it would break the sensitivity it was chosen for).
    """
    y_true = np.asarray(y_true).astype(int)
    n, fewest = len(y_true), int(min((y_true == 1).sum(), (y_true == 0).sum())) if len(y_true) else 0
    if strategy == "fixed":
        return float(fixed), f"fixed at {fixed:g} (evaluate.threshold_strategy: fixed)"
    if fewest < min_per_class:
        return float(fixed), (
            f"fixed at {fixed:g}: the {images} images hold {fewest} of their smaller class, fewer than "
            f"evaluate.threshold_min_per_class {min_per_class}, too few to tune a threshold on"
        )
    raw = choose_threshold(y_true, probability, strategy, target_sensitivity, fixed)
    if strategy == "target_sensitivity":
        return raw, f"{raw:.4f}: the highest reaching sensitivity {target_sensitivity:g} on {n} {images} images"
    weight = n / (n + prior_images)
    chosen = float(fixed + weight * (raw - fixed))
    return chosen, (
        f"{chosen:.4f}: {strategy} on {n} {images} images gave {raw:.4f}, shrunk toward {fixed:g} "
        f"with weight {weight:.2f} (evaluate.threshold_prior_images {prior_images:g})"
    )


CI_METRICS = ("f1", "accuracy", "sensitivity", "specificity")


def bootstrap_ci(y_true, probability, threshold: float, samples: int = 1000, seed: int = 0, metrics=CI_METRICS) -> dict:
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


def plot_reliability(cal: dict, title: str, path: Path) -> Path:
    fig, ax = _axes((3.6, 3.4))
    xs = [r["mean_probability"] for r in cal["bins"]]
    ys = [r["observed_rate"] for r in cal["bins"]]
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8, label="perfect")
    ax.plot(xs, ys, "o-", label=f"ECE {cal['ece']:.3f}")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.legend(loc="upper left")
    return _save(fig, ax, title, path)


def evaluate_ood_set(classifier, out_dir: Path, seed: int = 0) -> dict:
    """The input gate on the offline out-of-distribution set (cxr/ood_set.py): the share refused, in
    all and by kind, and every image's score; writes ood_report.json. Empty for a model without a gate."""
    from cxr.ood_set import build_ood_set

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
