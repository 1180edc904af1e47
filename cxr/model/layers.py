"""Custom Keras layers saved inside the model file (importing this module registers them)."""

import keras

from cxr.data.augment import draw_parameters, paper_transforms
from cxr.params import AugmentParams

# ImageNet channel means in BGR order, as the Caffe-trained VGG16 weights expect
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="cxr")
class CaffeInput(keras.layers.Layer):
    """[0, 1] RGB -> 0-255 BGR minus the ImageNet mean: the input VGG16's pretrained weights expect."""

    def call(self, x):
        x = keras.ops.flip(x, axis=-1) * 255.0
        return x - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=x.dtype)


@keras.saving.register_keras_serializable(package="cxr")
class PaperAugmentation(keras.layers.Layer):
    """The paper's augmentation inside the model, for training on an accelerator: one projective transform
    per image (cxr.data.augment.paper_transforms), drawn with Keras' own random ops, so it runs on the GPU and
    under any Keras backend. Identity at inference: the saved model serves unchanged."""

    def __init__(self, augment: dict, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # resample in float32 under mixed precision too
        super().__init__(**kwargs)
        self.augment, self.seed = dict(augment), seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training:
            return x

        def uniform(shape, low, high):
            return keras.random.uniform(shape, low, high, seed=self.generator)

        height, width = int(x.shape[1]), int(x.shape[2])
        params = AugmentParams(**self.augment)
        transforms = paper_transforms(
            *draw_parameters(params, keras.ops.shape(x)[0], height, width, uniform), height, width
        )
        return keras.ops.image.affine_transform(x, transforms, interpolation="bilinear", fill_mode="nearest")

    def get_config(self):
        return {**super().get_config(), "augment": self.augment, "seed": self.seed}


def channel_moments(x, zones=(1, 1)) -> list[tuple]:
    """(B, H, W, C) feature maps -> [(mean, std)] of each channel (B, C each), in float32: over the whole map,
    then over each zone of a `zones` = (rows, columns) grid, row by row (none for (1, 1); a grid finer than the
    map is coarsened to it). One pass: each zone's mean of x and of x squared (std = sqrt(E[x^2] - E[x]^2)),
    the whole map's as the zones' means weighted by their areas. Subtracting the mean first would read the
    map twice more, which in a converted int8 pass costs a third as much as the convolutions."""
    x = keras.ops.cast(x, "float32")
    height, width = int(x.shape[1]), int(x.shape[2])
    rows, cols = min(zones[0], height), min(zones[1], width)
    squares = x * x
    boxes = [
        (r * height // rows, (r + 1) * height // rows, c * width // cols, (c + 1) * width // cols)
        for r in range(rows)
        for c in range(cols)
    ]
    if len(boxes) == 1:  # the whole map: no slice (a converted pass would copy it)
        return [moments(keras.ops.mean(x, axis=(1, 2)), keras.ops.mean(squares, axis=(1, 2)))]
    firsts = [keras.ops.mean(x[:, t:b, left:right, :], axis=(1, 2)) for t, b, left, right in boxes]
    seconds = [keras.ops.mean(squares[:, t:b, left:right, :], axis=(1, 2)) for t, b, left, right in boxes]
    areas = [(b - t) * (right - left) / (height * width) for t, b, left, right in boxes]
    firsts.insert(0, sum(a * m for a, m in zip(areas, firsts, strict=True)))  # the whole map: the zones tile it
    seconds.insert(0, sum(a * m for a, m in zip(areas, seconds, strict=True)))
    return [moments(mean, second) for mean, second in zip(firsts, seconds, strict=True)]


def moments(mean, second) -> tuple:
    """(mean, std) from the mean of x and the mean of x squared."""
    return mean, keras.ops.sqrt(keras.ops.maximum(second - mean * mean, 0.0))


@keras.saving.register_keras_serializable(package="cxr")
class ChannelStatistics(keras.layers.Layer):
    """(B, H, W, C) feature maps -> (B, 2C (1 + zones)): log1p of each channel's spatial mean, then of its
    standard deviation, over the whole map and then over each zone of a `zones` = (rows, columns) grid (row
    by row; none for (1, 1)). What a block says about texture and contrast, and where: on the lungs' box,
    upper, middle and lower zones of each lung for (3, 2). A grid finer than the map is coarsened to it.
    log1p tames the heavy tail of ReLU activations. Computed in float32 (variances overflow float16)."""

    def __init__(self, zones=(1, 1), **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.zones = tuple(int(z) for z in zones)

    def call(self, x):
        stats = []
        for mean, std in channel_moments(x, self.zones):
            stats += [mean, std]
        return keras.ops.log1p(keras.ops.maximum(keras.ops.concatenate(stats, axis=-1), 0.0))

    def get_config(self):
        return {**super().get_config(), "zones": list(self.zones)}
