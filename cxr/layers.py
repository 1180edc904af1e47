"""Custom Keras layers saved inside the model file (importing this module registers them)."""

import keras

# ImageNet channel means in BGR order, as the Caffe-trained VGG16 weights expect
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="cxr")
class CaffeInput(keras.layers.Layer):
    """[0, 1] RGB -> 0-255 BGR minus the ImageNet mean: the input VGG16's pretrained weights expect."""

    def call(self, x):
        x = keras.ops.flip(x, axis=-1) * 255.0
        return x - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=x.dtype)
