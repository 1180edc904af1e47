"""Fitting one network: VGG16 and its head (`train.head`: a linear probe in the CPU profile, the paper's
Dense 1024 -> 512 -> 1 in the paper's) on a set of images, with the best epoch by validation
cross-entropy kept or the last one. With a frozen base the head is fitted on the base's features,
computed once (`features_once`). What is fitted around it (folds, calibration, threshold, the safety
monitors) is in cxr/training/."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

import cxr.model.layers  # noqa: F401 (registers the custom layers for reloading the checkpoint)
from cxr import events
from cxr.data.augment import build_augmenter, make_dataset
from cxr.data.manifest import labels_of
from cxr.model.architecture import (
    POOLING_LAYERS,
    STANDARDISE_LAYER,
    adapt_standardisation,
    build_model,
    compile_model,
    standardise_on,
    truncated,
)
from cxr.model.block_stats import GATE_WIDTH, build_scorer, feature_statistics
from cxr.params import Params


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
    where augmentation runs, whether to log, and the cache of frozen-base features (see HeadFeatures)."""

    dataset_dir: Path
    positive: str
    params: Params
    out_dir: Path
    in_model: bool = False
    log_to_mlflow: bool = False
    cache: dict = dataclasses.field(default_factory=dict)
    extractor: object = None  # the frozen base's converted pass (cxr/inference/runtime.py); None: TensorFlow's

    @property
    def features_once(self) -> bool:
        return features_once(self.params, self.in_model)

    def probabilities(self, model, frame) -> np.ndarray:
        """`model`'s probabilities on `frame`: from the cached features when the base is frozen."""
        if self.features_once:
            data = HeadFeatures(model, self.dataset_dir, self.positive, self.params, self.cache, self.extractor)
            return data.probabilities(model, frame)
        return image_probabilities(model, frame, self.dataset_dir, self.positive, self.params)


def fit_network(setup: FitSetup, train_frame, val_frame, select_best: bool, fold: tuple[int, int] | None = None):
    """One network fitted on `train_frame`. With `select_best` the epoch with the lowest validation
    cross-entropy (`SELECT_ON`) on
    `val_frame` is kept; otherwise the last epoch (val_frame, if any, is only watched). Returns
    (model, history, best epoch, 1-based). With a frozen base and no random augmentation the head is
    fitted on the base's features, computed once (`features_once`) into `cache` (see HeadFeatures)."""
    dataset_dir, positive, params, out_dir = setup.dataset_dir, setup.positive, setup.params, setup.out_dir
    in_model, log_to_mlflow, cache = setup.in_model, setup.log_to_mlflow, setup.cache
    tp = params.train
    if setup.features_once:
        model = build_model(tp)
        data = HeadFeatures(model, dataset_dir, positive, params, cache, setup.extractor)
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
    return model, history, lowest_loss_epoch(history)


# the best epoch is the one with the lowest validation cross-entropy, the data term alone: val_loss also
# carries the L2 penalty, which grows as the head's weights grow from zero and so favours the first epochs
SELECT_ON = "val_bce"


def lowest_loss_epoch(history: dict) -> int:
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


class HeadFeatures:
    """The base's pooled features of a split's images (and their mirrors), as the model computes them.

    The base is frozen, so an image's features never change within one training: they are computed once
    per image (and mirror) into `cache` ({(file, mirrored): row}), which the cross-validation folds, the
    final fit and the safety checks share. With `pooling: block_stats` the rows are the input gate's
    features (cxr/safety/input_gate.py: blocks 1-5, the first GATE_WIDTH columns) followed by the head's input (its
    blocks' statistics over the whole map and each zone): one pass serves both, in TensorFlow or, given
    `extractor`, the same pass converted (cxr/inference/runtime.py).
    """

    def __init__(self, model, dataset_dir, positive: str, params: Params, cache=None, extractor=None):
        names = [layer.name for layer in model.layers]
        self.cut = next(i for i, name in enumerate(names) if name in POOLING_LAYERS)
        self.gate_rows = params.train.pooling == "block_stats"
        if self.gate_rows:
            self.extractor = extractor or build_scorer(model, pooled=True)
            self.columns = slice(GATE_WIDTH, None)
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
            if self.gate_rows:  # [gate statistics, head input] -> one row each
                out = np.concatenate([feature_statistics(out[0]), np.asarray(out[1], np.float64)], axis=1)
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
            # called directly, not through predict(): a fresh head per call would trace a new predict
            # function each time (TensorFlow's retracing warning, and the time it takes)
            out.append(np.asarray(head(rows, training=False), np.float64).reshape(-1))
        return np.mean(out, axis=0)

    def features(self, frame, training: bool) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels); for training with mirror_pairs, the mirror images' rows follow."""
        views = [False] + ([True] if training and self.params.augment.mirror_pairs else [])
        x = np.concatenate([self.head_rows(frame, mirrored) for mirrored in views])
        return x, np.tile(labels_of(frame, self.positive).astype(np.float32), len(views))

    def head_rows(self, frame, mirrored: bool = False) -> np.ndarray:
        """The head's input for each row of `frame` (the columns after the gate's), float32."""
        rows = self.rows(frame, mirrored)
        return (rows[:, self.columns] if self.gate_rows else rows).astype(np.float32)

    def head(self, model, name: str = "head"):
        """`model`'s own layers after the cut, on a feature input (shared: fitting it fits `model`)."""
        inputs = keras.Input(model.layers[self.cut].output.shape[1:], name="features")
        x = inputs
        for layer in model.layers[self.cut + 1 :]:
            x = layer(x)
        return keras.Model(inputs, x, name=name)


def _fit_head(model, data: HeadFeatures, train_frame, val_frame, params: Params, select_best, log_to_mlflow, fold):
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
    return model, history, lowest_loss_epoch(history) if select_best else tp.epochs


def image_probabilities(model, frame, dataset_dir, positive: str, params: Params) -> np.ndarray:
    """The network's probabilities for `frame`, averaged with the mirror image's as the served model does."""
    tp = params.train
    ds = make_dataset(frame, dataset_dir, positive, tp.image_size, tp.batch_size)
    probability = np.asarray(model.predict(ds, verbose=0), dtype=np.float64).reshape(-1)
    if tp.flip_average:
        mirrored = ds.map(lambda x, y: (x[:, :, ::-1, :], y))
        probability = (probability + np.asarray(model.predict(mirrored, verbose=0)).reshape(-1)) / 2
    return probability
