"""Grad-CAM over the last VGG16 convolution: which regions drove the positive-class probability."""

from __future__ import annotations

import io

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image
from scipy import ndimage

from cxr.model.block_stats import base_of

LAST_CONV = "block5_conv3"


class GradCam:
    """Built once per model; `heatmap` runs one traced function (no re-tracing per request)."""

    def __init__(self, keras_model, image_size: int):
        base = base_of(keras_model)
        features = keras.Model(base.inputs, [base.get_layer(LAST_CONV).output, base.output])
        names = [layer.name for layer in keras_model.layers]
        before = keras_model.layers[1 : names.index(base.name)]  # input adapters (e.g. CaffeInput)
        after = keras_model.layers[names.index(base.name) + 1 :]  # Flatten + the paper's head

        @tf.function(input_signature=[tf.TensorSpec((1, image_size, image_size, 3), tf.float32)])
        def cam(x):
            for layer in before:
                x = layer(x)
            with tf.GradientTape() as tape:
                conv, y = features(x)
                tape.watch(conv)
                for layer in after:
                    y = layer(y)
            grads = tape.gradient(y, conv)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            heat = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))[0]
            return heat / (tf.reduce_max(heat) + 1e-8), y[0, 0]

        self._cam = cam

    def heatmap(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """(1, S, S, 3) float input -> (h, w) map in [0, 1], probability."""
        heat, probability = self._cam(np.asarray(batch, np.float32))
        return np.asarray(heat), float(probability)


def place_heat(heat: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A heat map of the region `box` (top, bottom, left, right) of a film, resized into that region of a
    map of the film's `shape` (zero elsewhere)."""
    top, bottom, left, right = box
    out = np.zeros(shape, np.float32)
    region = Image.fromarray(np.float32(heat)).resize((right - left, bottom - top), Image.BILINEAR)
    out[top:bottom, left:right] = np.asarray(region)
    return out


def overlay_png(image: np.ndarray, heat: np.ndarray, max_side: int = 512, alpha: float = 0.45) -> bytes:
    """The X-ray (downscaled to max_side) with the heatmap blended over it, as PNG bytes (in memory)."""
    base = Image.fromarray(image).convert("RGB")
    base.thumbnail((max_side, max_side))
    heat_img = Image.fromarray(np.uint8(np.clip(heat, 0, 1) * 255)).resize(base.size, Image.BILINEAR)
    colored = colormaps["jet"](np.asarray(heat_img) / 255.0)[..., :3]
    blended = (1 - alpha) * np.asarray(base, np.float32) / 255.0 + alpha * colored
    buf = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(blended, 0, 1) * 255)).save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_png(image: np.ndarray, max_side: int = 512, mask: np.ndarray | None = None) -> bytes:
    """The X-ray downscaled to max_side, PNG bytes (in memory); with `mask` (bool, the image's size), the lung
    fields' outline drawn over it in green."""
    image = np.array(Image.fromarray(image).convert("RGB"))
    if mask is not None:
        edge = mask & ~ndimage.binary_erosion(mask, iterations=max(1, max(mask.shape) // 200))
        image[edge] = (0, 220, 0)
    img = Image.fromarray(image)
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
