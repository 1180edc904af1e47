"""The classifier's view of a film: its lung fields, cropped, optionally masked, intensity-standardised.

Given a film and its lung mask (cxr/model/segmenter.py), `lung_view` crops the film to the lungs'
bounding box (plus a margin), equalises the histogram of the pixels inside the lungs, and (the `lungs`
view) fills everything outside the (slightly dilated) lung fields with black; the `crop` view keeps the
box's mediastinum and ribs. What reaches the classifier is the chest at a standard contrast, not the
film's borders, markers, collimation or exposure.
Pure NumPy and SciPy: training, evaluation and serving call the same function.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

MARGIN = 0.04  # of the film's height and width, around the lungs' bounding box
DILATE = 0.02  # of the crop's larger side: the lung border stays inside the view
LUNG_VIEWS = ("crop", "lungs")  # cropped to the lungs' box | also masked (lungs.view film: the whole film)


def bounding_box(mask: np.ndarray, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a non-empty mask, widened by `margin` of the film on each side."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    dy, dx = int(round(margin * h)), int(round(margin * w))
    return max(0, rows[0] - dy), min(h, rows[-1] + 1 + dy), max(0, cols[0] - dx), min(w, cols[-1] + 1 + dx)


def equalise_within(pixels: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """uint8 pixels mapped through the cumulative histogram of the pixels `inside` (to 0..255)."""
    values = pixels[inside]
    if values.size == 0:
        return pixels
    cdf = np.cumsum(np.bincount(values, minlength=256)).astype(np.float64)
    lowest = cdf[values.min()]  # the darkest lung pixel maps to 0, the brightest to 255
    cdf = np.clip((cdf - lowest) / max(cdf[-1] - lowest, 1.0), 0.0, 1.0)
    return np.round(255.0 * cdf[pixels]).astype(np.uint8)


def lung_view(film: np.ndarray, mask: np.ndarray, equalise: bool = True, mask_outside: bool = True) -> np.ndarray:
    """(H, W[, 3]) uint8 film and its (H, W) bool lung mask -> (h, w, 3) uint8 view of the lungs.
    An empty mask gives the whole film, equalised over all of it (the caller decides whether to trust it)."""
    gray = film[..., 0] if film.ndim == 3 else film
    if not mask.any():
        out = equalise_within(gray, np.ones_like(mask)) if equalise else gray
        return np.repeat(out[..., None], 3, axis=2)
    top, bottom, left, right = bounding_box(mask)
    crop, inside = gray[top:bottom, left:right], mask[top:bottom, left:right]
    radius = max(1, int(round(DILATE * max(crop.shape))))
    inside = ndimage.binary_dilation(inside, iterations=radius)
    out = equalise_within(crop, inside) if equalise else crop.copy()
    if mask_outside:
        out[~inside] = 0
    return np.repeat(out[..., None], 3, axis=2)


def hide_lungs(film: np.ndarray, mask: np.ndarray, keep_lungs: bool = False) -> np.ndarray:
    """The film with its lung fields (or, `keep_lungs`, everything else) filled with its mean grey: the
    shortcut probe's views."""
    out = np.array(film, copy=True)
    fill = np.uint8(round(float(out.mean())))
    region = ~mask if keep_lungs else mask
    out[region] = fill
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to (H, W)."""
    if mask.shape == tuple(shape):
        return mask
    big = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(big) > 127
