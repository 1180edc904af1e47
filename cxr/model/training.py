"""Training: VGG16 and its head (`train.head`: a linear probe in the CPU profile, the paper's Dense
1024 -> 512 -> 1 in the paper's) fitted on the train split with the best epoch by validation loss
kept, or cross-validated; then temperature and threshold on held-out probabilities, `config.json`,
and the safety checks (input gate, scope check) fitted beside the model."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf

import cxr.model.layers  # noqa: F401 (registers the custom layers for reloading the checkpoint)
from cxr import events
from cxr.data.augment import build_augmenter, make_dataset
from cxr.data.lung_view import LUNG_VIEWS
from cxr.data.manifest import class_names, labels_of, read_manifest, split_frame
from cxr.errors import CxrError
from cxr.evaluation.cross_validation import OOF_FILE, assign_folds, summarise
from cxr.evaluation.metrics import calibration, compute_metrics
from cxr.evaluation.splits import split_features
from cxr.evaluation.thresholds import decide_threshold
from cxr.inference.classifier import XrayClassifier
from cxr.model.architecture import (
    POOLING_LAYERS,
    STANDARDISE_LAYER,
    adapt_standardisation,
    build_model,
    compile_model,
    standardise_on,
    truncated,
)
from cxr.model.calibration import apply_temperature, fit_temperature
from cxr.model.config import MODEL_FILE, ModelConfig
from cxr.model.lung_inputs import fit_segmenter, write_views
from cxr.model.segmenter import SEGMENTER_FILE
from cxr.params import Params
from cxr.safety.drift import DriftReference
from cxr.safety.input_gate import build_scorer, feature_statistics, fit_gate, gate_columns
from cxr.safety.population import fit_scope, reference_features, reference_images


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int  # 1-based
    history: dict
    gpu: bool
    mixed_precision: bool
    metrics: dict = dataclasses.field(default_factory=dict)  # calibration, and cv_* with cross-validation


def configure_devices(mode: str) -> tuple[bool, bool]:
    """(gpu visible, mixed precision on). `auto` turns mixed precision on only with a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    use_mixed = (mode == "auto" and bool(gpus)) or str(mode).lower() in ("true", "on", "1")
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return bool(gpus), use_mixed


class EpochReporter:
    """Keras callback factory: per-epoch loss and metrics to the active MLflow run and as a progress event."""

    @staticmethod
    def create(log_to_mlflow: bool = True, fold: tuple[int, int] | None = None):
        class _Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                figures = {k: float(v) for k, v in (logs or {}).items()}
                if log_to_mlflow and mlflow.active_run() is not None:
                    mlflow.log_metrics(figures, step=epoch + 1)
                where = {"fold": fold[0], "folds": fold[1]} if fold else {}
                events.emit("epoch", epoch=epoch + 1, epochs=self.params.get("epochs"), **where, **figures)

        return _Reporter()


def fit_input_gate(model_dir: Path, dataset_dir, train_frame, val_frame, params: Params, cache: dict | None = None):
    """Fit the safety checks on the trained model's features of the un-augmented train split and save them
    next to the model: the input gate (cxr/safety/input_gate.py, ood.npz; thresholded on held-out scores), the
    drift reference (cxr/safety/drift.py, drift.npz; with the gate) and the population scope check
    (cxr/safety/population.py, scope.npz; the training adults against the reference children). `cache`: the
    gate's features of training images already computed ({(file, mirrored): row}, see _HeadData), used where
    it holds them. Returns the input gate, or None when it is off."""
    classifier = XrayClassifier().load(
        model_dir / MODEL_FILE, ModelConfig.read(model_dir), lungs_path=model_dir / SEGMENTER_FILE
    )
    op, sp = params.ood, params.scope

    def features(frame):
        if cache is not None and all((f, False) in cache for f in frame["file"]):
            return np.stack([cache[(f, False)] for f in frame["file"]]) if len(frame) else np.zeros((0, 0))
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


def largest_loss_jump(losses: list[float]) -> float:
    """The largest ratio of an epoch's training loss to the epoch before's, over the epochs whose loss is
    above ln 2, what guessing costs (a spike shows as > 2; 1.0 when there is none). Small losses wobbling
    from 0.05 to 0.12 are not instability; a jump to 11 is. Logged as loss_jump_max, on the cross-entropy
    alone (`bce`), not on a loss that also carries the L2 penalty."""
    ratios = [b / a for a, b in zip(losses, losses[1:], strict=False) if a > 0 and b > math.log(2)]
    return float(max(ratios, default=1.0))


@dataclass(frozen=True)
class FitSetup:
    """What every network of one training run shares: the data, the settings, where checkpoints go,
    where augmentation runs, whether to log, and the cache of frozen-base features (see _HeadData)."""

    dataset_dir: Path
    positive: str
    params: Params
    out_dir: Path
    in_model: bool = False
    log_to_mlflow: bool = False
    cache: dict = dataclasses.field(default_factory=dict)

    @property
    def features_once(self) -> bool:
        return features_once(self.params, self.in_model)

    def probabilities(self, model, frame) -> np.ndarray:
        """`model`'s probabilities on `frame`: from the cached features when the base is frozen."""
        if self.features_once:
            return _HeadData(model, self.dataset_dir, self.positive, self.params, self.cache).probabilities(
                model, frame
            )
        return _probabilities(model, frame, self.dataset_dir, self.positive, self.params)


def _fit(setup: FitSetup, train_frame, val_frame, select_best: bool, fold: tuple[int, int] | None = None):
    """One network fitted on `train_frame`. With `select_best` the epoch with the lowest validation
    cross-entropy (`SELECT_ON`) on
    `val_frame` is kept; otherwise the last epoch (val_frame, if any, is only watched). Returns
    (model, history, best epoch, 1-based). With a frozen base and no random augmentation the head is
    fitted on the base's features, computed once (`features_once`) into `cache` (see _HeadData)."""
    dataset_dir, positive, params, out_dir = setup.dataset_dir, setup.positive, setup.params, setup.out_dir
    in_model, log_to_mlflow, cache = setup.in_model, setup.log_to_mlflow, setup.cache
    tp = params.train
    if setup.features_once:
        model = build_model(tp)
        data = _HeadData(model, dataset_dir, positive, params, cache)
        return _fit_head(model, data, train_frame, val_frame, params, select_best, log_to_mlflow, fold)
    train_ds = make_dataset(
        train_frame,
        dataset_dir,
        positive,
        tp.image_size,
        tp.batch_size,
        augmenter=None if in_model else build_augmenter(params.augment, seed=tp.seed + (fold[0] if fold else 0)),
        shuffle_buffer=params.augment.shuffle_buffer,
        seed=tp.seed,
        mirror_both=params.augment.mirror_pairs,
    )
    val_ds = None if val_frame is None else make_dataset(val_frame, dataset_dir, positive, tp.image_size, tp.batch_size)
    model = build_model(tp, augment=dataclasses.asdict(params.augment) if in_model else None)
    if tp.standardise:
        clean = make_dataset(train_frame, dataset_dir, positive, tp.image_size, tp.batch_size)
        adapt_standardisation(model, clean.map(lambda x, y: x))
    compile_model(model, tp)
    checkpoint = out_dir / "best.keras"
    callbacks = [EpochReporter.create(log_to_mlflow, fold)]
    if select_best:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(checkpoint, monitor=SELECT_ON, mode="min", save_best_only=True)
        )
    history = model.fit(train_ds, validation_data=val_ds, epochs=tp.epochs, callbacks=callbacks, verbose=2)
    history = {k: [float(x) for x in v] for k, v in history.history.items()}
    if not select_best:
        return model, history, tp.epochs
    model = keras.models.load_model(checkpoint, compile=False)
    checkpoint.unlink()
    return model, history, _lowest_val_loss_epoch(history)


# the best epoch is the one with the lowest validation cross-entropy, the data term alone: val_loss also
# carries the L2 penalty, which grows as the head's weights grow from zero and so favours the first epochs
SELECT_ON = "val_bce"


def _lowest_val_loss_epoch(history: dict) -> int:
    """The 1-based epoch whose validation cross-entropy was lowest (the one select_best keeps)."""
    losses = history[SELECT_ON]
    return int(min(range(len(losses)), key=losses.__getitem__)) + 1


def features_once(params: Params, in_model: bool) -> bool:
    """Whether the head can be fitted on features computed once: the base is frozen and every epoch shows
    the same images (no random transform, no coin-toss mirroring), so what the base makes of them never
    changes. The same optimisation, batches and epochs as fitting the whole network; the base then runs
    once per image (and mirror) instead of once per image per epoch."""
    a = params.augment
    random = any((a.rotation_deg, a.width_shift, a.height_shift, a.shear, a.zoom))
    return params.train.freeze_base and not in_model and not random and not a.coin_flip


class _HeadData:
    """The base's pooled features of a split's images (and their mirrors), as the model computes them.

    The base is frozen, so an image's features never change within one training: they are computed once
    per image (and mirror) into `cache` ({(file, mirrored): row}), which the cross-validation folds, the
    final fit and the safety checks share. With `pooling: block_stats` the rows are the input gate's
    features (cxr/safety/input_gate.py: blocks 1-5), of which the head reads its blocks' columns: one pass serves both.
    """

    def __init__(self, model, dataset_dir, positive: str, params: Params, cache: dict | None = None):
        names = [layer.name for layer in model.layers]
        self.cut = next(i for i, name in enumerate(names) if name in POOLING_LAYERS)
        self.gate_rows = params.train.pooling == "block_stats"
        if self.gate_rows:
            self.extractor = build_scorer(model, statistics_only=True)
            self.columns = gate_columns(params.train.stat_blocks)
        else:
            self.extractor = truncated(model, self.cut)
        self.cache = {} if cache is None else cache
        self.dataset_dir, self.positive, self.params = dataset_dir, positive, params

    def rows(self, frame, mirrored: bool = False) -> np.ndarray:
        """What the extractor gives for each row of `frame`, computed only for images not yet cached."""
        tp = self.params.train
        missing = frame[[(f, mirrored) not in self.cache for f in frame["file"]]]
        if len(missing):
            images = make_dataset(missing, self.dataset_dir, self.positive, tp.image_size, tp.batch_size)
            images = images.map(lambda x, y: x[:, :, ::-1, :] if mirrored else x)
            out = self.extractor.predict(images, verbose=0)
            out = feature_statistics(out) if self.gate_rows else out
            self.cache.update({(f, mirrored): row for f, row in zip(missing["file"], out, strict=True)})
        return np.stack([self.cache[(f, mirrored)] for f in frame["file"]])

    def probabilities(self, model, frame) -> np.ndarray:
        """`model`'s probabilities for `frame` from the cached features (its head layers only), averaged
        with the mirror image's under train.flip_average, as _probabilities computes them from images."""
        head = self.head(model)
        views = [False] + ([True] if self.params.train.flip_average else [])
        out = []
        for mirrored in views:
            rows = self.head_rows(frame, mirrored)
            out.append(np.asarray(head.predict(rows, verbose=0), np.float64).reshape(-1))
        return np.mean(out, axis=0)

    def features(self, frame, training: bool) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels); for training with mirror_pairs, the mirror images' rows follow."""
        views = [False] + ([True] if training and self.params.augment.mirror_pairs else [])
        x = np.concatenate([self.head_rows(frame, mirrored) for mirrored in views])
        return x, np.tile(labels_of(frame, self.positive).astype(np.float32), len(views))

    def head_rows(self, frame, mirrored: bool = False) -> np.ndarray:
        """The head's input for each row of `frame` (its blocks' columns of gate rows), float32."""
        rows = self.rows(frame, mirrored)
        return (rows[:, self.columns] if self.gate_rows else rows).astype(np.float32)

    def head(self, model, name: str = "head"):
        """`model`'s own layers after the cut, on a feature input (shared: fitting it fits `model`)."""
        inputs = keras.Input(model.layers[self.cut].output.shape[1:], name="features")
        x = inputs
        for layer in model.layers[self.cut + 1 :]:
            x = layer(x)
        return keras.Model(inputs, x, name=name)


def _fit_head(model, data: _HeadData, train_frame, val_frame, params: Params, select_best, log_to_mlflow, fold):
    """_fit for features_once: the model's own head layers (shared, so `model` gets the fitted weights)
    on a feature input, fitted with the model's optimiser settings, batches and epochs."""
    tp = params.train
    x_train, y_train = data.features(train_frame, training=True)
    if tp.standardise:  # on the training images' features, mirrors left out, as adapt_standardisation does
        standardise_on(model.get_layer(STANDARDISE_LAYER), x_train[: len(train_frame)])
    head = data.head(model)
    compile_model(head, tp)
    validation = None if val_frame is None else data.features(val_frame, training=False)
    callbacks = [EpochReporter.create(log_to_mlflow, fold)]
    if select_best:  # never stops early (patience: every epoch); restores the lowest val_bce's weights
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=SELECT_ON, mode="min", patience=tp.epochs, restore_best_weights=True)
        )
    history = head.fit(
        x_train,
        y_train,
        batch_size=tp.batch_size,
        epochs=tp.epochs,
        shuffle=True,
        validation_data=validation,
        callbacks=callbacks,
        verbose=2,
    )
    history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return model, history, _lowest_val_loss_epoch(history) if select_best else tp.epochs


def _probabilities(model, frame, dataset_dir, positive: str, params: Params) -> np.ndarray:
    """The network's probabilities for `frame`, averaged with the mirror image's as the served model does."""
    tp = params.train
    ds = make_dataset(frame, dataset_dir, positive, tp.image_size, tp.batch_size)
    probability = np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)
    if tp.flip_average:
        mirrored = ds.map(lambda x, y: (x[:, :, ::-1, :], y))
        probability = (probability + np.asarray(model.predict(mirrored, verbose=0)).reshape(-1)) / 2
    return probability


def _cross_validate(setup: FitSetup, pool):
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
            model, fold_history, _ = _fit(setup, pool[~held], pool[held], False, (fold + 1, k))
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
    _check_trainable(dataset_dir, train_frame, val_frame, tp)
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
        fitted = _fit_final(setup, train_frame, val_frame)
    keras.mixed_precision.set_global_policy("float32")
    fitted.model.save(out_dir / MODEL_FILE)
    metrics = fitted.metrics | {"loss_jump_max": largest_loss_jump(fitted.history.get("bce", fitted.history["loss"]))}
    metrics |= {f"lungs_{k}": v for k, v in lung_report.items() if isinstance(v, float)}
    calibrated = _calibrate_and_configure(setup, fitted, negative, metrics)
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
        fit_input_gate(out_dir, dataset_dir, gate_train, gate_val, params, setup.cache if gate_rows else None)
    return TrainResult(out_dir, fitted.best_epoch, fitted.history, gpu, mixed, metrics)


def _check_trainable(dataset_dir, train_frame, val_frame, tp) -> None:
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
class _Fitted:
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


def _fit_final(setup: FitSetup, train_frame, val_frame) -> _Fitted:
    """With cross-validation: the folds, then the final network on all pooled images; else the network
    on the train split with the best epoch by validation loss."""
    ep = setup.params.evaluate
    if not ep.cv_folds:
        best, history, best_epoch = _fit(setup, train_frame, val_frame, True)
        probability = setup.probabilities(best, val_frame)
        validation = f"the {len(val_frame)} images of the validation split"
        return _Fitted(
            best, history, best_epoch, val_frame, probability, None, validation, (train_frame, val_frame), {}
        )
    held_out = pd.concat([train_frame, val_frame], ignore_index=True)  # every image held out once
    probability, folds, fold_metrics = _cross_validate(setup, held_out)
    metrics = summarise(fold_metrics) | {"loss_jump_max_folds": max(m["loss_jump"] for m in fold_metrics)}
    keras.utils.set_random_seed(setup.params.train.seed)
    best, history, best_epoch = _fit(setup, held_out, None, False)
    validation = f"{ep.cv_folds}-fold out-of-fold predictions on the {len(held_out)} train + val images"
    return _Fitted(
        best, history, best_epoch, held_out, probability, folds, validation, (held_out, held_out.iloc[0:0]), metrics
    )


def _calibrate_and_configure(setup: FitSetup, fitted: _Fitted, negative: str, metrics: dict) -> np.ndarray:
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
    ).write(setup.out_dir)
    return calibrated
