"""The tf.data input pipeline and the paper's augmentation as one projective transform per image.

Decode in parallel, resize to 8-bit single-channel (the cache: 64 KB per 256 px image), shuffle (training
only), batch, augment (training only, one resampling per image, on the one channel), scale to [0, 1] and
expand to three channels in the graph, prefetch. Validation and test data are never augmented or shuffled.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from keras import ops

from cxr.data.images import resize_uint8
from cxr.data.manifest import labels_of
from cxr.params import AugmentParams


def augmentation_spec(params: AugmentParams) -> dict:
    """What the augmenter does, in the paper's terms (ImageDataGenerator) and in Keras layer terms."""
    return {
        "rescale": "1/255",
        "rotation_range_deg": params.rotation_deg,
        "width_shift_range": params.width_shift,
        "height_shift_range": params.height_shift,
        "shear_range_deg": params.shear,
        "zoom_range": params.zoom,
        "horizontal_flip": params.horizontal_flip,
        "mirror": ("each image and its mirror every epoch" if params.mirror_both else "at random, p = 0.5")
        if params.horizontal_flip
        else "none",
        "fill_mode": "nearest",
        "applied_to": "train split only",
    }


def paper_transforms(theta_deg, tx, ty, shear_deg, zx, zy, flip, height: int, width: int):
    """Per-image parameters (each a (B,) tensor) -> (B, 8) projective transforms for
    `keras.ops.image.affine_transform`: rotation, shift, shear and zoom composed into one matrix exactly as
    the paper's `ImageDataGenerator.apply_affine_transform` composes them (R @ S @ Sh @ Z about the image
    centre, in its (x, y) convention), then the horizontal flip it applies afterwards. One resampling per
    image instead of one per operation."""
    theta, shear = theta_deg * (math.pi / 180.0), shear_deg * (math.pi / 180.0)
    cos, sin, shear_sin, shear_cos = ops.cos(theta), ops.sin(theta), ops.sin(shear), ops.cos(shear)
    # R @ S @ Sh @ Z: R = [[c, -s], [s, c]], S = shift (tx, ty), Sh = [[1, -sin], [0, cos]], Z = diag(zx, zy)
    a00, a01 = cos * zx, (-cos * shear_sin - sin * shear_cos) * zy
    a10, a11 = sin * zx, (-sin * shear_sin + cos * shear_cos) * zy
    b0, b1 = cos * tx - sin * ty, sin * tx + cos * ty
    # about the centre, as transform_matrix_offset_center(matrix, h, w) does
    o0, o1 = height / 2 - 0.5, width / 2 - 0.5
    b0, b1 = b0 + o0 - (a00 * o0 + a01 * o1), b1 + o1 - (a10 * o0 + a11 * o1)
    # then the horizontal flip: output column c reads the transformed image at column width - 1 - c
    f = ops.where(flip, -1.0, 1.0)
    g = ops.where(flip, float(width - 1), 0.0)
    zero = ops.zeros_like(a00)
    return ops.stack([a00 * f, a01, a00 * g + b0, a10 * f, a11, a10 * g + b1, zero, zero], axis=1)


class PaperAugmenter:
    """The paper's ImageDataGenerator augmentation as one projective transform per image, applied once
    (bilinear, nearest fill), on batches of any channel count; new draws on every call, reproducible
    from `seed`. `ImageDataGenerator` reads `shear_range` as degrees, so shear 0.2 is 0.2 degrees."""

    def __init__(self, params: AugmentParams, seed: int | None = None):
        self.params = params
        self.generator = tf.random.Generator.from_seed(0 if seed is None else seed)

    def draw(self, batch):
        """The per-image parameters for `batch` (see draw_parameters), from this augmenter's generator."""

        def uniform(shape, low, high):
            return self.generator.uniform(shape, low, high)

        return draw_parameters(self.params, tf.shape(batch)[0], float(batch.shape[1]), float(batch.shape[2]), uniform)

    def __call__(self, images, training: bool = True):
        if not training:
            return images
        transforms = paper_transforms(*self.draw(images), int(images.shape[1]), int(images.shape[2]))
        return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="nearest")


def draw_parameters(params: AugmentParams, n, height: float, width: float, uniform):
    """(theta in degrees, tx, ty, shear in degrees, zx, zy, flip) for `n` images, as
    ImageDataGenerator.get_random_transform draws them; `uniform(shape, low, high)` is the random source."""

    def symmetric(limit):
        return uniform([n], -float(limit), float(limit)) if limit else ops.zeros([n])

    zx, zy = (uniform([n], 1 - params.zoom, 1 + params.zoom) for _ in range(2)) if params.zoom else (ops.ones([n]),) * 2
    # with mirror_pairs the dataset holds every image and its mirror (make_dataset): no coin toss here
    flip = uniform([n], 0.0, 1.0) < 0.5 if params.coin_flip else ops.zeros([n], "bool")
    shift_h, shift_w = symmetric(params.height_shift) * height, symmetric(params.width_shift) * width
    return symmetric(params.rotation_deg), shift_h, shift_w, symmetric(params.shear), zx, zy, flip


def build_augmenter(params: AugmentParams, seed: int | None = None) -> PaperAugmenter:
    """The paper's augmentation settings, one resampling per image (see PaperAugmenter)."""
    return PaperAugmenter(params, seed)


def load_gray(path, image_size: int):
    """PNG file written by ingestion -> uint8 (image_size, image_size, 1): what the training cache keeps
    (64 KB per image at 256 px, not 786 KB of float32 RGB). X-rays are grayscale; the resize is the one
    `resize_and_scale` does, rounded to 8 bits as it rounds."""
    image = resize_uint8(tf.io.decode_png(tf.io.read_file(path), channels=1), image_size)
    image.set_shape((image_size, image_size, 1))
    return image


def to_model_input(batch):
    """(B, S, S, 1) on the 0-255 scale -> float32 [0, 1] (B, S, S, 3): scaling and channels, in the graph."""
    return tf.repeat(tf.cast(batch, tf.float32) / 255.0, 3, axis=-1)


def load_image(path, image_size: int):
    """PNG file written by ingestion -> float32 [0, 1] (image_size, image_size, 3), as the model takes it."""
    return to_model_input(load_gray(path, image_size)[None])[0]


def make_dataset(
    frame,
    dataset_dir: str | Path,
    positive_class: str,
    image_size: int,
    batch_size: int,
    augmenter=None,
    shuffle_buffer: int = 0,
    seed: int = 0,
    mirror_both: bool = False,
):
    """A batched tf.data.Dataset of (image, label) for the rows of `frame` (one split).

    `augmenter`, `shuffle_buffer` and `mirror_both` (every image, then every image mirrored: twice the
    rows, shuffled together) are for the training split only.
    """
    paths = [str(Path(dataset_dir) / f) for f in frame["file"]]
    labels = labels_of(frame, positive_class).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(lambda p, y: (load_gray(p, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()  # uint8 with one channel: what lets the full dataset fit in memory
    if mirror_both:
        ds = ds.concatenate(ds.map(lambda x, y: (x[:, ::-1, :], y)))
    if shuffle_buffer:
        rows = len(paths) * (2 if mirror_both else 1)
        ds = ds.shuffle(min(shuffle_buffer, max(rows, 1)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augmenter is not None:  # on the one channel: a third of the resampling work of RGB

        def augment(x, y):
            return to_model_input(augmenter(tf.cast(x, tf.float32), training=True)), y

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (to_model_input(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def write_preview(frame, dataset_dir, params: AugmentParams, image_size: int, out_path, seed: int = 0) -> Path:
    """A grid: each row one training image, original then three augmented draws (a visual check)."""
    matplotlib.use("Agg")

    augmenter = build_augmenter(params, seed=seed)
    rows = frame.head(max(1, min(params.preview_images, len(frame))))
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2 * len(rows)), squeeze=False)
    for i, file in enumerate(rows["file"]):
        image = load_image(str(Path(dataset_dir) / file), image_size)
        draws = [image] + [augmenter(image[None], training=True)[0] for _ in range(3)]
        for j, draw in enumerate(draws):
            axes[i][j].imshow(np.clip(np.asarray(draw), 0, 1))
            axes[i][j].axis("off")
            axes[i][j].set_title("original" if j == 0 else f"augmented {j}", fontsize=7)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    return out_path
