"""Block statistics of the VGG16 base: the per-channel mean and standard deviation of the last convolution
of every block (2,944 numbers per image), computed inside the graph in the same pass as the probability.

Read by the input gate (cxr/safety/input_gate.py: all of them, log1p-compressed by `feature_statistics`).
The `pooling: block_stats` head computes its own in the model (cxr.model.layers.ChannelStatistics: its
`train.stat_blocks`, over the whole map and each zone of `train.stat_zones`); `build_scorer(pooled=True)`
gives both from one pass, as training's feature cache holds them (cxr.model.fitting.HeadFeatures).
"""

from __future__ import annotations

import keras
import numpy as np

from cxr.model.layers import channel_moments

FEATURE_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3")
CHANNELS = (64, 128, 256, 512, 512)  # of each FEATURE_LAYERS layer (VGG16 blocks 1-5)
GATE_WIDTH = 2 * sum(CHANNELS)  # the statistics' columns: each layer's channels, mean and std


def block_columns(blocks) -> np.ndarray:
    """The columns of the block statistics that hold the mean and std of the last convolution of each of
    `blocks` (VGG16 blocks 1-5), in the order a `pooling: block_stats` head with `stat_zones` [1, 1] reads them."""
    widths = dict(zip(range(1, 6), CHANNELS, strict=True))
    starts = dict(zip(range(1, 6), np.cumsum([0] + [2 * widths[b] for b in range(1, 5)]), strict=True))
    return np.concatenate([np.arange(starts[b], starts[b] + 2 * widths[b]) for b in sorted(set(blocks))])


def build_scorer(keras_model, statistics_only: bool = False, pooled: bool = False):
    """A Keras model sharing `keras_model`'s weights: image batch -> (probability, raw feature statistics).

    One pass through the VGG16 base gives both: the base's inner layers are called in order, the
    per-channel mean and std of FEATURE_LAYERS are taken inside the graph (small outputs), and the
    base's output continues through the head, exactly as in `keras_model` (VGG16 has no batch norm or
    dropout, so calling its layers gives what calling the base gives). `statistics_only`: the statistics
    alone (the head is not run). `pooled`: the statistics and the head's input (the base's pooled output,
    for `pooling: block_stats` its block statistics over the whole map and each zone), not the probability.
    """
    base = base_of(keras_model)
    names = [layer.name for layer in keras_model.layers]
    before = keras_model.layers[1 : names.index(base.name)]  # input adapters (e.g. CaffeInput)
    after = keras_model.layers[names.index(base.name) + 1 :]  # Flatten + the paper's head
    inner = keras.Model(base.inputs, [base.get_layer(n).output for n in FEATURE_LAYERS] + [base.output])
    inputs = keras.Input(keras_model.input_shape[1:], name="image")
    x = inputs
    for layer in before:
        x = layer(x)
    *maps, y = inner(x)
    head_input = y
    for layer in after:
        y = layer(y)
    stats = []
    for fmap in maps:
        stats += list(channel_moments(fmap)[0])
    stats = keras.ops.concatenate(stats, axis=1)
    if pooled:
        return keras.Model(inputs, [stats, head_input], name="scorer")
    return keras.Model(inputs, stats if statistics_only else [y, stats], name="scorer")


def base_of(keras_model):
    """The VGG16 base inside `keras_model` (its one nested Keras model)."""
    return next(layer for layer in keras_model.layers if isinstance(layer, keras.Model))


def head_of(keras_model):
    """`keras_model`'s own layers after the base (Flatten or pooling and the head), as a Keras model on the
    base's output: what follows build_scorer(pooled=True)'s second output (weights shared)."""
    base = base_of(keras_model)
    names = [layer.name for layer in keras_model.layers]
    inputs = keras.Input(base.output.shape[1:], name="features")
    x = inputs
    for layer in keras_model.layers[names.index(base.name) + 1 :]:
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def feature_statistics(raw) -> np.ndarray:
    """The scorer's raw statistics -> the detector's features (log1p-compressed, float64)."""
    return np.log1p(np.maximum(np.asarray(raw, np.float64), 0.0))
