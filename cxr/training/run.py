"""Training a model: the classifier (cxr/training/classifier.py), then the safety monitors beside it
(cxr/training/monitors.py), into one model folder."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cxr.data.augment import make_dataset
from cxr.data.lung_view import LUNG_VIEWS
from cxr.data.manifest import class_names, read_manifest, split_frame
from cxr.errors import CxrError
from cxr.evaluation.cross_validation import OOF_FILE
from cxr.inference.runtime import CALIBRATION_IMAGES, Extractor, convert, save
from cxr.model.architecture import build_model
from cxr.model.block_stats import base_of, build_scorer
from cxr.model.config import MODEL_FILE
from cxr.model.fitting import (
    FitSetup,
    configure_devices,
    largest_loss_jump,
)
from cxr.model.lung_inputs import fit_segmenter, write_views
from cxr.params import Params
from cxr.training.classifier import calibrate_and_configure, check_trainable, fit_final
from cxr.training.monitors import fit_monitors


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int  # 1-based
    history: dict
    gpu: bool
    mixed_precision: bool
    metrics: dict = dataclasses.field(default_factory=dict)  # calibration, and cv_* with cross-validation


def converted_pass(setup: FitSetup, train_frame, gpu: bool = False):
    """The frozen base's pass converted to OpenVINO (int8: calibrated on up to CALIBRATION_IMAGES training
    images), saved into the model folder and compiled; None where TensorFlow runs it. Only a frozen base with
    block statistics has a pass fixed before the head is fitted: `train.runtime: auto` converts exactly then,
    on a machine without a GPU (a GPU runs TensorFlow's pass faster); `openvino` refuses any other profile."""
    tp = setup.params.train
    fixed = setup.features_once and tp.pooling == "block_stats"
    if tp.runtime == "tensorflow" or (tp.runtime == "auto" and (gpu or not fixed)):
        return None
    if not fixed:
        raise CxrError(
            "train.runtime openvino converts the frozen base's block statistics: it needs train.freeze_base true, "
            "train.pooling block_stats and no random augmentation; set train.runtime=auto or tensorflow for this "
            "profile."
        )
    calibration = ()
    if tp.precision == "int8":
        sample = train_frame.sample(n=min(CALIBRATION_IMAGES, len(train_frame)), random_state=tp.seed)
        images = make_dataset(sample, setup.dataset_dir, setup.positive, tp.image_size, tp.batch_size)
        calibration = (np.asarray(x) for x, _ in images)
    source = build_model(tp)
    model = convert(build_scorer(source, pooled=True), tp.image_size, tp.precision, calibration)
    save(model, setup.out_dir)
    extractor = Extractor(model, tp.precision)
    extractor.base_weights = base_of(source).get_weights()  # what the converted pass computes with
    return extractor


def train_model(
    dataset_dir: str | Path, params: Params, out_dir: str | Path, log_to_mlflow: bool = True
) -> TrainResult:
    """Fit, write model.keras + config.json (+ ood.npz, scope.npz) into out_dir.

    Without cross-validation: fitted on the train split, the best epoch by validation cross-entropy kept; threshold and
    temperature from the validation split. With evaluate.cv_folds K: K fold networks give out-of-fold
    probabilities for the pooled train + val images (threshold, temperature and the gate's evidence come
    from them, written to oof.json), then the final network is fitted on all pooled images.
    """
    tp = params.train
    keras.utils.set_random_seed(tp.seed)
    gpu, mixed = configure_devices(tp.mixed_precision)
    frame = read_manifest(dataset_dir)
    negative, positive = class_names(frame, params.ingest.positive_class)
    train_frame, val_frame = split_frame(frame, "train"), split_frame(frame, "val")
    check_trainable(dataset_dir, train_frame, val_frame, tp)
    in_model = tp.augment_on == "model" or (tp.augment_on == "auto" and gpu)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter, lung_report = fit_segmenter(params, out_dir)
    keras.utils.set_random_seed(tp.seed)  # the classifier draws from train.seed, whatever the segmenter drew
    with tempfile.TemporaryDirectory(prefix="lung-views-") as views:
        fit_dir = Path(dataset_dir)
        if (
            params.lungs.view in LUNG_VIEWS
        ):  # the network reads lung views (the checks load the model, which makes them)
            lp = params.lungs
            lung_report["found_rate"] = write_views(segmenter, dataset_dir, frame["file"], views, lp.view, lp.equalise)
            fit_dir = Path(views)
        setup = FitSetup(fit_dir, positive, params, out_dir, in_model, log_to_mlflow)
        setup = dataclasses.replace(setup, extractor=converted_pass(setup, train_frame, gpu))
        fitted = fit_final(setup, train_frame, val_frame)
    if setup.extractor is not None:  # the saved model's frozen base is the converted one (the reference path)
        base_of(fitted.model).set_weights(setup.extractor.base_weights)
    keras.mixed_precision.set_global_policy("float32")
    fitted.model.save(out_dir / MODEL_FILE)
    metrics = fitted.metrics | {"loss_jump_max": largest_loss_jump(fitted.history.get("bce", fitted.history["loss"]))}
    metrics |= {f"lungs_{k}": v for k, v in lung_report.items() if isinstance(v, float)}
    calibrated = calibrate_and_configure(setup, fitted, negative, metrics)
    if fitted.folds is not None:
        rows = [
            {"source": s, "label": lab, "fold": int(f) + 1, "probability": float(p)}
            for s, lab, f, p in zip(
                fitted.held_out["source"], fitted.held_out["label"], fitted.folds, calibrated, strict=True
            )
        ]
        (out_dir / OOF_FILE).write_text(json.dumps({"validation": fitted.validation, "predictions": rows}, indent=2))
    if params.ood.enabled or params.scope.enabled:
        gate_rows = tp.pooling == "block_stats" and setup.features_once
        gate_train, gate_val = fitted.gate_frames
        fit_monitors(out_dir, dataset_dir, gate_train, gate_val, params, setup.cache if gate_rows else None)
    return TrainResult(out_dir, fitted.best_epoch, fitted.history, gpu, mixed, metrics)
