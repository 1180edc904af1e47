"""The lung-field segmenter: a small U-Net (image -> lung mask) fitted on frontal films with lung masks.

It runs at `lungs.size` pixels (a square resize of the whole film), on 8-bit grayscale with its histogram
equalised (`unet_input`: films from different sources and exposures reach it with one intensity
distribution, which keeps its fit from depending on the fitting machine's round-off), and its mask is
cleaned up (the two largest connected regions, holes filled) and resized back to the film. Fitted on
adult normal films only (cxr/data/external_normals): its masks on COVID films are an extrapolation,
checked by eye and by the share of films where it finds plausible lungs (`plausible`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps
from scipy import ndimage

from cxr.data.lung_view import resize_mask

SEGMENTER_FILE = "lungs.keras"
MIN_AREA = 0.08  # a mask covering less of the film than this is no lung field (nothing found)
MAX_AREA = 0.80  # nor one covering more


def gray(array: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 -> (H, W) uint8."""
    return array[..., 0] if array.ndim == 3 else array


def square(array: np.ndarray, size: int, resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8, the whole film squashed to a square (as the classifier sees it)."""
    return np.asarray(Image.fromarray(gray(array)).resize((size, size), resample))


def unet_input(film: np.ndarray, size: int) -> np.ndarray:
    """What the U-Net reads of a film: squashed to (size, size), histogram equalised, as float32."""
    return np.asarray(ImageOps.equalize(Image.fromarray(square(film, size))), np.float32)


def build_unet(size: int, width: int = 8, depth: int = 3):
    """A U-Net of `depth` down-sampling levels, `width` filters in the first, doubling per level."""
    inputs = keras.Input((size, size, 1), name="film")
    x, skips = keras.layers.Rescaling(1 / 255.0)(inputs), []
    for level in range(depth):
        x = _double_conv(x, width * 2**level)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = _double_conv(x, width * 2**depth)
    for level in reversed(range(depth)):
        x = keras.layers.UpSampling2D()(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        x = _double_conv(x, width * 2**level)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="lungs")(x)
    return keras.Model(inputs, outputs, name="lung_unet")


def _double_conv(x, filters: int):
    for _ in range(2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
    return x


def _soft_dice_loss(y_true, y_pred):
    inter = keras.ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = keras.ops.sum(y_true, axis=(1, 2, 3)) + keras.ops.sum(y_pred, axis=(1, 2, 3))
    return 1.0 - keras.ops.mean((2 * inter + 1.0) / (total + 1.0))


def _loss(y_true, y_pred):
    return keras.losses.binary_crossentropy(y_true, y_pred) + _soft_dice_loss(y_true, y_pred)


def augmented(films: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random variant of each (film, mask) pair: what differs between sites and framings (zoom and shift
    of the field of view, mirror, exposure as gamma and contrast, blur, noise)."""
    n, size = films.shape[0], films.shape[1]
    out_f, out_m = np.empty_like(films, dtype=np.float32), np.empty_like(masks, dtype=np.float32)
    for i in range(n):
        zoom = rng.uniform(0.8, 1.15)
        shift = rng.uniform(-0.08, 0.08, 2) * size
        centre = (size - 1) / 2
        matrix = np.eye(2) / zoom
        offset = centre - matrix @ (np.array([centre, centre]) + shift)
        f = ndimage.affine_transform(films[i].astype(np.float32), matrix, offset, order=1, mode="nearest")
        m = ndimage.affine_transform(masks[i].astype(np.float32), matrix, offset, order=0, mode="constant")
        if rng.random() < 0.5:
            f, m = f[:, ::-1], m[:, ::-1]
        f = 255.0 * (np.clip(f, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
        f = (f - f.mean()) * rng.uniform(0.7, 1.3) + f.mean()
        if rng.random() < 0.3:
            f = ndimage.gaussian_filter(f, rng.uniform(0.5, 1.5))
        f = f + rng.normal(0, rng.uniform(0, 6), f.shape)
        out_f[i], out_m[i] = np.clip(f, 0, 255), m
    return out_f, out_m


@dataclass
class Segmenter:
    """A fitted U-Net and the size it runs at."""

    model: object
    size: int
    forward: object = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self):
        # one graph for every batch size (the batch dimension is left free, so nothing is retraced): a call
        # costs about a tenth of calling the layers eagerly, which is most of a request's segmentation
        # (bench/request_stages.py)
        spec = tf.TensorSpec([None, self.size, self.size, 1], tf.float32)
        self.forward = tf.function(lambda batch: self.model(batch, training=False), input_signature=[spec])

    @classmethod
    def fit(cls, films: list[np.ndarray], masks: list[np.ndarray], size: int, epochs: int, seed: int) -> Segmenter:
        """Fit on 8-bit films and their binary masks (any sizes; squashed to `size`), with a fresh random
        variant (`augmented`) of every film each epoch."""
        keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)
        x = np.stack([unet_input(f, size) for f in films])
        y = np.stack([square(m, size, Image.Resampling.NEAREST) > 127 for m in masks]).astype(np.float32)
        model = build_unet(size)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=_loss)
        for _ in range(epochs):
            xa, ya = augmented(x, y, rng)
            model.fit(xa[..., None], ya[..., None], batch_size=16, epochs=1, shuffle=True, verbose=0)
        return cls(model, size)

    def probabilities(self, films: list[np.ndarray]) -> np.ndarray:
        """(n, size, size) lung probabilities of each film (squashed to the segmenter's size)."""
        if not films:
            return np.zeros((0, self.size, self.size), np.float32)
        batch = np.stack([unet_input(f, self.size) for f in films])[..., None]
        return np.asarray(self.forward(batch), np.float32)[..., 0]

    def masks(self, films: list[np.ndarray]) -> list[np.ndarray]:
        """Each film's lung mask at the film's own size (bool), cleaned (`clean_mask`)."""
        probabilities = self.probabilities(films)
        return [resize_mask(clean_mask(p > 0.5), film.shape[:2]) for film, p in zip(films, probabilities, strict=True)]

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / SEGMENTER_FILE
        self.model.save(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Segmenter:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
        return cls(model, int(model.input_shape[1]))


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """The two largest connected regions of a binary mask (the two lungs), holes filled."""
    labels, n = ndimage.label(mask)
    if n > 2:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        keep = 1 + np.argsort(sizes)[-2:]
        mask = np.isin(labels, keep)
    return ndimage.binary_fill_holes(mask)


def plausible(mask: np.ndarray) -> bool:
    """Whether a mask can be lung fields: a share of the film between MIN_AREA and MAX_AREA."""
    return MIN_AREA <= float(np.mean(mask)) <= MAX_AREA


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def fit_and_measure(names, films, masks, fit_share: float, size: int, epochs: int, seed: int) -> tuple[Segmenter, dict]:
    """Fit on a random `fit_share` of the masked films; Dice on the rest (mean and 95% bootstrap interval).
    Returns the segmenter and its report (figures, and which films it was fitted on)."""
    order = np.random.default_rng(seed).permutation(len(films))
    n_fit = min(len(films), max(1, int(round(fit_share * len(films)))))
    fit, held = order[:n_fit], order[n_fit:]
    segmenter = Segmenter.fit(
        [films[i] for i in fit], [masks[i].astype(np.uint8) * 255 for i in fit], size, epochs, seed
    )
    scores = np.array([dice(m, masks[i]) for m, i in zip(segmenter.masks([films[i] for i in held]), held, strict=True)])
    report = {
        "size": size,
        "epochs": epochs,
        "n_fit": int(n_fit),
        "n_held_out": int(len(held)),
        "fitted_on": sorted(names[i] for i in fit),
    }
    if len(scores):
        boot = np.random.default_rng(seed).choice(scores, (1000, len(scores))).mean(axis=1)
        report |= {
            "dice": float(scores.mean()),
            "dice_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "dice_min": float(scores.min()),
        }
    return segmenter, report
