"""The train stage's first step: the classifier network fitted (on the train split, or cross-validated and
then on all train + val images), its temperature and threshold chosen on held-out probabilities, and
`config.json` written."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from cxr.data.lung_view import LUNG_VIEWS
from cxr.data.manifest import labels_of
from cxr.errors import CxrError
from cxr.evaluation.cross_validation import summarise
from cxr.evaluation.metrics import calibration
from cxr.evaluation.thresholds import decide_threshold
from cxr.model.calibration import apply_temperature, fit_temperature
from cxr.model.config import ModelConfig
from cxr.model.fitting import (
    FitSetup,
    fit_network,
)
from cxr.training.folds import cross_validate


def check_trainable(dataset_dir, train_frame, val_frame, tp) -> None:
    if train_frame.empty or val_frame.empty:
        raise CxrError(
            f"The train and val splits of {dataset_dir} must both hold images; add images or change ingest.split."
        )
    if tp.standardise and not tp.freeze_base:
        raise CxrError(
            "train.standardise needs train.freeze_base=true: its statistics are of the frozen base's features, "
            "which fine-tuning changes; to fine-tune, set train.standardise=false (the paper profile does)."
        )


@dataclass
class Fitted:
    """The network to save and the held-out evidence its threshold and temperature are chosen on."""

    model: object
    history: dict
    best_epoch: int
    held_out: pd.DataFrame  # the images `probability` is of
    probability: np.ndarray  # held-out (validation or out-of-fold), before calibration
    folds: np.ndarray | None  # fold index per held-out row with cross-validation
    validation: str  # a sentence naming the held-out images
    gate_frames: tuple  # (images the input gate is fitted on, images it is thresholded on)
    metrics: dict


def fit_final(setup: FitSetup, train_frame, val_frame) -> Fitted:
    """With cross-validation: the folds, then the final network on all pooled images; else the network
    on the train split with the best epoch by validation loss."""
    ep = setup.params.evaluate
    if not ep.cv_folds:
        best, history, best_epoch = fit_network(setup, train_frame, val_frame, True)
        probability = setup.probabilities(best, val_frame)
        validation = f"the {len(val_frame)} images of the validation split"
        return Fitted(best, history, best_epoch, val_frame, probability, None, validation, (train_frame, val_frame), {})
    held_out = pd.concat([train_frame, val_frame], ignore_index=True)  # every image held out once
    probability, folds, fold_metrics = cross_validate(setup, held_out)
    metrics = summarise(fold_metrics) | {"loss_jump_max_folds": max(m["loss_jump"] for m in fold_metrics)}
    keras.utils.set_random_seed(setup.params.train.seed)
    best, history, best_epoch = fit_network(setup, held_out, None, False)
    validation = f"{ep.cv_folds}-fold out-of-fold predictions on the {len(held_out)} train + val images"
    return Fitted(
        best, history, best_epoch, held_out, probability, folds, validation, (held_out, held_out.iloc[0:0]), metrics
    )


def calibrate_and_configure(setup: FitSetup, fitted: Fitted, negative: str, metrics: dict) -> np.ndarray:
    """Temperature first, then the threshold on what the served model outputs; writes config.json and
    adds the calibration figures to `metrics`. Returns the calibrated held-out probabilities."""
    params, tp, ep = setup.params, setup.params.train, setup.params.evaluate
    y, probability = labels_of(fitted.held_out, setup.positive), fitted.probability
    fit = fit_temperature(y, probability, ep.threshold_min_per_class)
    calibrated = apply_temperature(probability, fit.temperature)
    metrics |= {
        "temperature": fit.temperature,
        "ece_before_calibration": calibration(y, probability)["ece"],
        "ece_after_calibration": calibration(y, calibrated)["ece"],
    }
    threshold, threshold_method = decide_threshold(
        y,
        calibrated,
        ep.threshold_strategy,
        ep.target_sensitivity,
        ep.threshold,
        ep.threshold_min_per_class,
        ep.threshold_prior_images,
        "out-of-fold" if ep.cv_folds else "validation",
    )
    ModelConfig(
        image_size=tp.image_size,
        positive_class=setup.positive,
        negative_class=negative,
        threshold=threshold,
        threshold_strategy=ep.threshold_strategy,
        threshold_method=threshold_method,
        temperature=fit.temperature,
        temperature_fitted=fit.fitted,
        temperature_method=fit.how,
        validation=fitted.validation,
        cv_folds=ep.cv_folds,
        weights=tp.weights,
        freeze_base=tp.freeze_base,
        flip_average=tp.flip_average,
        augmented_in="model" if setup.in_model else "data",
        fitted_on="the base's features, computed once" if setup.features_once else "images, every epoch",
        input_view=params.lungs.view,
        lung_equalise=params.lungs.view in LUNG_VIEWS and params.lungs.equalise,
        best_epoch=fitted.best_epoch,
        epoch_selection="last epoch (cross-validation: no held-out images choose it)"
        if ep.cv_folds
        else "lowest validation cross-entropy",
        profile=params.profile,
        runtime="openvino" if setup.extractor is not None else "tensorflow",
        precision=setup.extractor.precision if setup.extractor is not None else "fp32",
    ).write(setup.out_dir)
    return calibrated
