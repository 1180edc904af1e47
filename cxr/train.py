"""Training: fit the paper's model on the train split, keep the best epoch by validation loss."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.augment import build_augmenter, labels_of, make_dataset
from cxr.data import class_names, read_manifest, split_frame
from cxr.errors import CxrError
from cxr.evaluate import decide_threshold
from cxr.model import build_model, compile_model
from cxr.params import Params
from cxr.pyfunc import CONFIG_FILE, MODEL_FILE


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int  # 1-based
    history: dict
    gpu: bool
    mixed_precision: bool


def configure_devices(mode: str) -> tuple[bool, bool]:
    """(gpu visible, mixed precision on). `auto` turns mixed precision on only with a GPU."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    use_mixed = (mode == "auto" and bool(gpus)) or str(mode).lower() in ("true", "on", "1")
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return bool(gpus), use_mixed


class EpochReporter:
    """Keras callback factory: per-epoch loss and metrics to the active MLflow run and as a progress event."""

    @staticmethod
    def create(log_to_mlflow: bool = True):
        import keras
        import mlflow

        from cxr import events

        class _Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                figures = {k: float(v) for k, v in (logs or {}).items()}
                if log_to_mlflow and mlflow.active_run() is not None:
                    mlflow.log_metrics(figures, step=epoch + 1)
                events.emit("epoch", epoch=epoch + 1, epochs=self.params.get("epochs"), **figures)

        return _Reporter()


def fit_input_gate(model_dir: Path, dataset_dir, train_frame, val_frame, params: Params):
    """Fit the input gate (cxr/ood.py) on the trained model's features of the un-augmented train split,
    threshold it on held-out scores, and save it next to the model (ood.npz)."""
    from cxr.evaluate import split_features
    from cxr.ood import fit_gate
    from cxr.pyfunc import XrayClassifier

    classifier = XrayClassifier().load(model_dir / MODEL_FILE, json.loads((model_dir / CONFIG_FILE).read_text()))
    op = params.ood
    gate = fit_gate(
        split_features(classifier, train_frame, dataset_dir),
        split_features(classifier, val_frame, dataset_dir),
        op.quantile,
        op.folds,
        op.max_components,
        params.train.seed,
    )
    gate.save(model_dir)
    return gate


def train_model(
    dataset_dir: str | Path, params: Params, out_dir: str | Path, log_to_mlflow: bool = True
) -> TrainResult:
    """Fit, checkpoint the best epoch by val_loss, write model.keras + config.json into out_dir."""
    import keras

    import cxr.layers  # noqa: F401 (registers the custom layers for reloading the checkpoint)

    tp = params.train
    keras.utils.set_random_seed(tp.seed)
    gpu, mixed = configure_devices(tp.mixed_precision)
    frame = read_manifest(dataset_dir)
    negative, positive = class_names(frame, params.ingest.positive_class)
    train_frame, val_frame = split_frame(frame, "train"), split_frame(frame, "val")
    if train_frame.empty or val_frame.empty:
        raise CxrError(
            f"The train and val splits of {dataset_dir} must both hold images; add images or change ingest.split."
        )
    if tp.augment_on not in ("auto", "data", "model"):
        raise CxrError(f"train.augment_on is '{tp.augment_on}'; choose auto, data or model.")
    in_model = tp.augment_on == "model" or (tp.augment_on == "auto" and gpu)
    train_ds = make_dataset(
        train_frame,
        dataset_dir,
        positive,
        tp.image_size,
        tp.batch_size,
        augmenter=None if in_model else build_augmenter(params.augment, seed=tp.seed),
        shuffle_buffer=params.augment.shuffle_buffer,
        seed=tp.seed,
    )
    val_ds = make_dataset(val_frame, dataset_dir, positive, tp.image_size, tp.batch_size)

    model = build_model(tp, augment=dataclasses.asdict(params.augment) if in_model else None)
    compile_model(model, tp)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "best.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        EpochReporter.create(log_to_mlflow),
    ]
    history = model.fit(train_ds, validation_data=val_ds, epochs=tp.epochs, callbacks=callbacks, verbose=2)
    losses = history.history["val_loss"]
    best_epoch = int(min(range(len(losses)), key=losses.__getitem__)) + 1

    best = keras.models.load_model(checkpoint, compile=False)
    keras.mixed_precision.set_global_policy("float32")
    best.save(out_dir / MODEL_FILE)
    checkpoint.unlink()
    ep = params.evaluate
    val_probability = np.asarray(best.predict(val_ds, verbose=0), dtype=np.float64).reshape(-1)
    if tp.flip_average:  # the threshold is chosen on what the served model outputs
        mirrored = val_ds.map(lambda x, y: (x[:, :, ::-1, :], y))
        val_probability = (val_probability + np.asarray(best.predict(mirrored, verbose=0)).reshape(-1)) / 2
    threshold, threshold_method = decide_threshold(
        labels_of(val_frame, positive),
        val_probability,
        ep.threshold_strategy,
        ep.target_sensitivity,
        ep.threshold,
        ep.threshold_min_per_class,
        ep.threshold_prior_images,
    )
    config = {
        "image_size": tp.image_size,
        "positive_class": positive,
        "negative_class": negative,
        "threshold": threshold,
        "threshold_strategy": ep.threshold_strategy,
        "threshold_method": threshold_method,
        "weights": tp.weights,
        "freeze_base": tp.freeze_base,
        "flip_average": tp.flip_average,
        "augmented_in": "model" if in_model else "data",
        "best_epoch": best_epoch,
        "profile": params.profile,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    if params.ood.enabled:
        fit_input_gate(out_dir, dataset_dir, train_frame, val_frame, params)
    return TrainResult(out_dir, best_epoch, {k: [float(x) for x in v] for k, v in history.history.items()}, gpu, mixed)
