"""The train step: fit, calibrate, choose the threshold, log the MLflow model."""

from __future__ import annotations

import math
import time

import mlflow

from cxr import events
from cxr.inference.classifier import log_model
from cxr.model.config import ModelConfig
from cxr.params import Params
from cxr.steps.context import RunContext, finite, log_to_parent
from cxr.tracking import record
from cxr.tracking import runs as tracking
from cxr.training import train_model


def train_step(ctx: RunContext, dataset_dir: str, model_dir: str, params: Params) -> str:
    """Train and log the MLflow model; returns its model URI."""
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "train"):
        result = train_model(dataset_dir, params, model_dir)
        mlflow.log_metrics(
            {"best_epoch": result.best_epoch, "gpu": int(result.gpu), "mixed_precision": int(result.mixed_precision)}
            | finite(result.metrics)
        )
        config = ModelConfig.read(model_dir)
        mlflow.set_tag("weights", params.train.weights)
        mlflow.set_tag("fitted_on", config.fitted_on)
        info = log_model(model_dir)
        model_uri = info.model_uri  # models:/m-<id>; runs:/<run>/model resolves to it too
        # the Models tab compares models by their parameters: every effective one, as the run logs them
        mlflow.log_model_params({k: str(v)[:6000] for k, v in params.flat().items()}, model_id=info.model_id)
    client = mlflow.MlflowClient()
    record.set_model_uri(client, ctx.parent_run_id, model_uri)
    for key in ("threshold_method", "temperature_method", "validation"):  # notes the card reads back
        client.set_tag(ctx.parent_run_id, key, getattr(config, key))
    log_to_parent(ctx, finite(result.metrics))
    _curves_to_parent(client, ctx.parent_run_id, result.history)
    m = result.metrics
    calibrated = (
        f"temperature {m['temperature']:.2f}: ECE {m['ece_before_calibration']:.3f} -> {m['ece_after_calibration']:.3f}"
        if config.temperature_fitted
        else "temperature not fitted (too few held-out images)"
    )
    if "cv_f1_mean" in m:
        events.figure(
            f"{int(m['cv_folds'])}-fold CV F1 {m['cv_f1_mean']:.2f} ± {m['cv_f1_std']:.2f}; final model on all "
            f"train + val images; {calibrated}"
        )
    else:
        events.figure(f"best epoch {result.best_epoch}; {calibrated}")
    return model_uri


def _curves_to_parent(client, parent_run_id: str, history: dict) -> None:
    """The network's per-epoch curves on the pipeline run too (`epoch/<name>`, step = epoch), where people
    compare runs; the train child run keeps them under their Keras names."""
    now = int(time.time() * 1000)
    metrics = [
        mlflow.entities.Metric(f"epoch/{name}", float(value), now, epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values, start=1)
        if math.isfinite(float(value))
    ]
    for start in range(0, len(metrics), 1000):
        client.log_batch(parent_run_id, metrics=metrics[start : start + 1000])
