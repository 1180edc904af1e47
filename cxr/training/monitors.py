"""The train stage's second step: the safety monitors fitted on the trained classifier's features and
saved beside it (input gate, drift reference, population scope check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr.evaluation.splits import split_features
from cxr.inference.classifier import XrayClassifier
from cxr.model.block_stats import GATE_WIDTH
from cxr.model.config import MODEL_FILE, ModelConfig
from cxr.model.segmenter import SEGMENTER_FILE
from cxr.params import Params
from cxr.safety.drift import DriftReference
from cxr.safety.input_gate import fit_gate
from cxr.safety.population import fit_scope, reference_features, reference_images


def fit_monitors(model_dir: Path, dataset_dir, train_frame, val_frame, params: Params, cache: dict | None = None):
    """Fit the safety checks on the trained model's features of the un-augmented train split and save them
    next to the model: the input gate (cxr/safety/input_gate.py, ood.npz; thresholded on held-out scores), the
    drift reference (cxr/safety/drift.py, drift.npz; with the gate) and the population scope check
    (cxr/safety/population.py, scope.npz; the training adults against the reference children). `cache`: the
    gate's features of training images already computed ({(file, mirrored): row}, see HeadFeatures), used where
    it holds them. Returns the input gate, or None when it is off."""
    classifier = XrayClassifier().load(
        model_dir / MODEL_FILE, ModelConfig.read(model_dir), lungs_path=model_dir / SEGMENTER_FILE
    )
    op, sp = params.ood, params.scope

    def features(frame):
        if cache is not None and all((f, False) in cache for f in frame["file"]):
            # a cached row is the gate's statistics, then the head's input (HeadFeatures)
            rows = [cache[(f, False)][:GATE_WIDTH] for f in frame["file"]]
            return np.stack(rows) if len(frame) else np.zeros((0, 0))
        return split_features(classifier, frame, dataset_dir)

    train_features = features(train_frame)
    gate = None
    if op.enabled:
        gate = fit_gate(
            train_features,
            features(val_frame),
            op.quantile,
            op.folds,
            op.max_components,
            params.train.seed,
            op.shift_quantile,
        )
        gate.save(model_dir)
        if op.drift_components > 0:  # the reference drift detection tests served images against
            DriftReference.fit(train_features, op.drift_components, params.train.seed).save(model_dir)
    if sp.enabled:
        children = reference_features(classifier, reference_images(sp.reference_dir))
        fit_scope(train_features, children, sp.accept_quantile, sp.c, sp.folds, params.train.seed).save(model_dir)
    return gate
