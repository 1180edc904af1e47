"""Cross-validation in the train stage: K fold networks give out-of-fold probabilities for the pooled
train + val images (the folds are drawn by cxr/evaluation/cross_validation.py)."""

from __future__ import annotations

import contextlib

import keras
import mlflow
import numpy as np

from cxr import events
from cxr.data.manifest import labels_of
from cxr.evaluation.cross_validation import assign_folds
from cxr.evaluation.metrics import compute_metrics
from cxr.model.fitting import (
    FitSetup,
    fit_network,
    largest_loss_jump,
)


def cross_validate(setup: FitSetup, pool):
    """K fold networks (cxr/evaluation/cross_validation.py): (out-of-fold probabilities, fold index per row,
    per-fold metrics).
    Each fold is an MLflow child run (cv-fold-<k>) of the active run, with its curves and metrics."""
    params, log_to_mlflow = setup.params, setup.log_to_mlflow
    k, ep = params.evaluate.cv_folds, params.evaluate
    # the folds are a split of the data, drawn with the split's seed (ingest.seed): runs that differ in
    # train.seed or any training setting are then compared on the same folds
    folds = assign_folds(pool, k, params.ingest.seed, params.ingest.near_duplicate_bits)
    oof, fold_metrics = np.zeros(len(pool)), []
    y = labels_of(pool, setup.positive)
    for fold in range(k):
        held = folds == fold
        run = (
            mlflow.start_run(
                run_name=f"cv-fold-{fold + 1}",
                nested=True,
                experiment_id=mlflow.active_run().info.experiment_id,  # the step's, not the default experiment
                tags={"cv.fold": str(fold + 1)},
            )
            if log_to_mlflow
            else contextlib.nullcontext()
        )
        with run:
            model, fold_history, _ = fit_network(setup, pool[~held], pool[held], False, (fold + 1, k))
            oof[held] = setup.probabilities(model, pool[held])  # cached features: no image through the base again
            # at the fixed evaluate.threshold: a threshold tuned on the held-out fold would flatter it
            metrics = compute_metrics(y[held], oof[held], ep.threshold)
            metrics["loss_jump"] = largest_loss_jump(fold_history.get("bce", fold_history["loss"]))
            fold_metrics.append(metrics)
            if log_to_mlflow:
                mlflow.log_metrics({f"fold_{m}": v for m, v in metrics.items() if np.isfinite(v)})
        events.emit("cv_fold", fold=fold + 1, folds=k, f1=metrics["f1"], n=metrics["n"])
        del model
        keras.backend.clear_session()
    return oof, folds, fold_metrics
