"""Acquisition variants of a film: what differs between hospitals, scanners and processing, drawn at random.

Exposure and processing (gamma, window), sharpness (blur or unsharp masking), noise, resolution (down- then
up-sampling) and JPEG round-trips. Applied to training films only, before segmentation and the lung view,
so the classifier sees each training film as other sites would have produced it.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def acquisition_variant(film: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W[, 3]) uint8 -> (H, W) uint8, one random acquisition variant of the same film."""
    gray = (film[..., 0] if film.ndim == 3 else film).astype(np.float32) / 255.0
    h, w = gray.shape
    lo, hi = rng.uniform(0.0, 0.08), rng.uniform(0.92, 1.0)  # window: clip and stretch
    gray = np.clip((gray - lo) / (hi - lo), 0, 1) ** rng.uniform(0.6, 1.7)  # gamma
    sigma = rng.uniform(0.3, 1.5)
    blurred = ndimage.gaussian_filter(gray, sigma)
    amount = rng.uniform(-0.8, 1.2)  # < 0: blur towards `blurred`; > 0: unsharp masking
    gray = np.clip(gray + amount * (gray - blurred), 0, 1)
    scale = rng.uniform(0.4, 1.0)  # resolution: down, then back up
    if scale < 0.95:
        small = Image.fromarray(np.uint8(gray * 255)).resize((max(8, int(w * scale)), max(8, int(h * scale))))
        gray = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255.0
    gray = np.clip(gray + rng.normal(0, rng.uniform(0, 0.03), gray.shape), 0, 1)
    out = np.uint8(np.round(gray * 255))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(out).save(buffer, format="JPEG", quality=int(rng.integers(30, 95)))
        out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    return out
