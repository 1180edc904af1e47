"""Cross-validation folds and their summary (evaluate.cv_folds).

On a small dataset the validation split is a handful of images: its F1 is noise, and choosing the
threshold or the temperature on it overfits. With `evaluate.cv_folds: K` the train and validation
splits are pooled and cut into K folds, stratified by class, with every near-duplicate group (the same
dHash grouping ingestion uses, so by content, not by file name) inside one fold. Each fold's model is
trained on the other K-1 folds for the fixed `train.epochs` (the held-out fold chooses nothing, not
even the epoch), and scores its held-out fold: every pooled image gets one out-of-fold probability
from a model that never saw it. The threshold, the temperature and the gate's validation evidence
come from those out-of-fold probabilities; the final model is then trained on all pooled images.
The test split stays out of all of it.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np

from cxr.data.manifest import near_duplicate_groups
from cxr.errors import CxrError
from cxr.evaluation.metrics import CV_METRICS

OOF_FILE = "oof.json"  # in the model folder: the out-of-fold predictions, the evaluate step's validation evidence


def assign_folds(frame, k: int, seed: int, near_duplicate_bits: int = 20) -> np.ndarray:
    """Fold index (0..k-1) per row of `frame` (manifest rows): stratified by `label`, near-duplicates
    together. Groups of a class are shuffled (seeded) and each goes to the fold holding the fewest
    images of that class so far (ties: the fewest images overall)."""
    if k < 2:
        raise CxrError(f"evaluate.cv_folds is {k}; use 0 (no cross-validation) or at least 2 folds.")
    groups = near_duplicate_groups(list(frame["dhash256"]), near_duplicate_bits)
    members: dict[int, list[int]] = defaultdict(list)
    for row, group in enumerate(groups):
        members[group].append(row)
    by_label: dict[str, list[list[int]]] = defaultdict(list)
    labels = list(frame["label"])
    shas = list(frame["sha256"])
    for rows in members.values():
        by_label[labels[rows[0]]].append(rows)
    folds = np.full(len(frame), -1, dtype=int)
    total = [0] * k  # ties go to the fold with fewest images overall, so fold sizes stay even too
    rng = random.Random(seed)
    for label in sorted(by_label):
        class_groups = sorted(by_label[label], key=lambda rows: min(shas[r] for r in rows))
        if len(class_groups) < k:
            raise CxrError(
                f"Class '{label}' has {len(class_groups)} distinct images in the train and val splits, fewer "
                f"than evaluate.cv_folds {k}; lower cv_folds or add images."
            )
        rng.shuffle(class_groups)
        filled = [0] * k
        for rows in sorted(class_groups, key=len, reverse=True):  # large groups first, then balance
            fold = min(range(k), key=lambda f: (filled[f], total[f], f))
            folds[rows] = fold
            filled[fold] += len(rows)
            total[fold] += len(rows)
    return folds


def summarise(fold_metrics: list[dict]) -> dict:
    """cv_<metric>_mean and cv_<metric>_std (sample std, ddof=1) over the folds' metrics."""
    summary = {}
    for name in CV_METRICS:
        values = np.array([m[name] for m in fold_metrics if np.isfinite(m.get(name, np.nan))], dtype=np.float64)
        if len(values):
            summary[f"cv_{name}_mean"] = float(values.mean())
            summary[f"cv_{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    summary["cv_folds"] = float(len(fold_metrics))
    return summary
