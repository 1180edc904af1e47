"""The tf.data input pipeline and the paper's augmentation as Keras preprocessing layers.

Decode in parallel, resize + rescale (the shared `resize_and_scale`), cache, shuffle (training only),
batch, augment (training only), prefetch. Validation and test data are never augmented or shuffled.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cxr.images import resize_and_scale
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
        "fill_mode": "nearest",
        "applied_to": "train split only",
    }


def build_augmenter(params: AugmentParams, seed: int | None = None):
    """Keras layers equivalent to the paper's ImageDataGenerator settings.

    ImageDataGenerator reads `shear_range` as an angle in degrees, so 0.2 means 0.2 degrees; the shear
    layer takes an intensity (tan of the angle), converted here so the augmentation is the paper's.
    """
    import keras

    layers = [
        keras.layers.RandomRotation(params.rotation_deg / 360.0, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(params.height_shift, params.width_shift, fill_mode="nearest", seed=seed),
        keras.layers.RandomShear(x_factor=math.tan(math.radians(params.shear)), fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(
            (-params.zoom, params.zoom), (-params.zoom, params.zoom), fill_mode="nearest", seed=seed
        ),
    ]
    if params.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    return keras.Sequential(layers, name="paper_augmentation")


def load_image(path, image_size: int):
    """PNG file written by ingestion -> float32 [0, 1] (image_size, image_size, 3)."""
    import tensorflow as tf

    image = tf.io.decode_png(tf.io.read_file(path), channels=3)
    image = resize_and_scale(image, image_size)
    image.set_shape((image_size, image_size, 3))
    return image


def make_dataset(
    frame,
    dataset_dir: str | Path,
    positive_class: str,
    image_size: int,
    batch_size: int,
    augmenter=None,
    shuffle_buffer: int = 0,
    seed: int = 0,
):
    """A batched tf.data.Dataset of (image, label) for the rows of `frame` (one split).

    `augmenter` and `shuffle_buffer` are for the training split only.
    """
    import tensorflow as tf

    paths = [str(Path(dataset_dir) / f) for f in frame["file"]]
    labels = (frame["label"] == positive_class).astype(np.float32).to_numpy()
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(lambda p, y: (load_image(p, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    if shuffle_buffer:
        ds = ds.shuffle(min(shuffle_buffer, max(len(paths), 1)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def labels_of(frame, positive_class: str) -> np.ndarray:
    return (frame["label"] == positive_class).astype(np.int64).to_numpy()


def write_preview(frame, dataset_dir, params: AugmentParams, image_size: int, out_path, seed: int = 0) -> Path:
    """A grid: each row one training image, original then three augmented draws (a visual check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
