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


@keras.saving.register_keras_serializable(package="cxr")
class ChannelStatistics(keras.layers.Layer):
    """(B, H, W, C) feature maps -> (B, 2C): log1p of each channel's spatial mean, then of its standard
    deviation. What a block says about texture and contrast, whatever the image size; log1p tames the
    heavy tail of ReLU activations. Computed in float32 (variances overflow float16)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        mean, std = keras.ops.mean(x, axis=(1, 2)), keras.ops.std(x, axis=(1, 2))
        return keras.ops.log1p(keras.ops.maximum(keras.ops.concatenate([mean, std], axis=-1), 0.0))
