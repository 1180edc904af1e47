"""The shortcut probe: does the model read the lungs, or the rest of the film?

The database's classes come from different hospitals and sources, so a classifier can learn the source
(scanner, burned-in labels, collimation, processing) instead of the disease (DeGrave et al., Nature
Machine Intelligence 2021). The probe scores the test split twice more: once with the lung fields hidden
(filled with the image's mean grey) and once with only the lung fields shown (everything else filled
instead). ROC AUC is the measure (0.5: chance, whatever the threshold): a model that stays well
above chance with the lungs hidden is reading non-anatomical cues; one that keeps its AUC with only the
lungs shown is not relying on the border. The lung fields are the model's own segmenter's masks
(cxr/model/segmenter.py), and the masked film then takes the model's whole path, segmentation included.
A model without a segmenter gets a box instead (rows and columns 15% to 85% of the film), which
approximates the lung fields of a centred frontal film and also covers the mediastinum.
"""

from __future__ import annotations

import numpy as np

from cxr.data.lung_view import hide_lungs
from cxr.evaluation.metrics import compute_metrics

BOX = (0.15, 0.85)  # the central box, as a share of the height and of the width
VIEWS = ("lungs_hidden", "lungs_only")
HIDDEN_AUC_CONCERN = 0.7  # above this with the lungs hidden, the card says the model reads the rest of the film


def masked(array: np.ndarray, view: str, mask: np.ndarray | None = None) -> np.ndarray:
    """An 8-bit (H, W[, C]) image with the lung fields (`lungs_hidden`) or everything else (`lungs_only`)
    filled with the image's mean grey: the fields of `mask` (bool, H x W), else the central box."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view}")
    if mask is not None:
        return hide_lungs(array, mask, keep_lungs=view == "lungs_only")
    out = np.array(array, copy=True)
    h, w = out.shape[:2]
    top, bottom = int(round(BOX[0] * h)), int(round(BOX[1] * h))
    left, right = int(round(BOX[0] * w)), int(round(BOX[1] * w))
    fill = np.uint8(round(float(out.mean())))
    if view == "lungs_hidden":
        out[top:bottom, left:right] = fill
    else:
        inside = out[top:bottom, left:right].copy()
        out[...] = fill
        out[top:bottom, left:right] = inside
    return out


def probe(classifier, batches, y_true: np.ndarray) -> dict:
    """ROC AUC, accuracy and F1 (at the model's threshold) of each masked view, over the images `batches`
    yields (lists of 8-bit arrays, in the order of `y_true`)."""
    scores = {view: [] for view in VIEWS}
    for arrays in batches:
        masks = classifier.lung_masks(arrays) or [None] * len(arrays)
        for view in VIEWS:
            shown = [masked(a, view, m) for a, m in zip(arrays, masks, strict=True)]
            scores[view].append(classifier.predict_arrays(shown))
    threshold = classifier.config.threshold
    out = {}
    for view, parts in scores.items():
        metrics = compute_metrics(y_true, np.concatenate(parts) if parts else np.zeros(0), threshold)
        out[view] = {k: metrics[k] for k in ("roc_auc", "accuracy", "f1", "n")}
    return out


def verdict(full_auc: float, hidden_auc: float, only_auc: float) -> str:
    """What the probe's figures mean, in one sentence, for the summary and the card."""
    if not np.isfinite(hidden_auc):
        return "shortcut probe not run (the test split lacks a class)"
    if hidden_auc >= HIDDEN_AUC_CONCERN:
        return (
            f"with the lung fields hidden the model still separates the classes (AUC {hidden_auc:.2f}, chance 0.5; "
            f"{full_auc:.2f} on whole films): it reads cues outside the lungs (source, labels, processing), so its "
            "accuracy here overstates what it would do on films from other hospitals"
        )
    return (
        f"with the lung fields hidden the model is near chance (AUC {hidden_auc:.2f}); with only the lungs shown "
        f"AUC {only_auc:.2f} (whole films {full_auc:.2f}): it relies mostly on the lung fields"
    )
