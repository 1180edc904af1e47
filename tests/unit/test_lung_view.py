"""The lung view, the segmenter's mask clean-up and Dice, acquisition variants."""

from __future__ import annotations

import numpy as np

from cxr.data.lung_view import bounding_box, equalise_within, hide_lungs, lung_view
from cxr.evaluation.shortcut import masked
from cxr.model.segmenter import clean_mask, dice, plausible


def two_lungs(h: int = 100, w: int = 80) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[20:80, 10:35] = True
    mask[20:80, 45:70] = True
    return mask


def test_bounding_box_widens_by_the_margin_and_stays_inside_the_film():
    mask = two_lungs()
    assert bounding_box(mask, margin=0.0) == (20, 80, 10, 70)
    assert bounding_box(mask, margin=0.1) == (10, 90, 2, 78)
    assert bounding_box(mask, margin=0.5) == (0, 100, 0, 80)


def test_equalise_within_spreads_the_lungs_over_the_full_range_whatever_the_exposure():
    rng = np.random.default_rng(0)
    film = rng.integers(60, 120, (100, 80)).astype(np.uint8)  # a dark, low-contrast film
    mask = two_lungs()
    out = equalise_within(film, mask)
    assert out[mask].min() == 0 and out[mask].max() == 255
    brighter = np.clip(film.astype(int) + 70, 0, 255).astype(np.uint8)
    assert np.array_equal(equalise_within(brighter, mask)[mask], out[mask])  # exposure no longer shows


def test_lung_view_crops_to_the_lungs_and_blacks_out_the_rest():
    film = np.full((100, 80, 3), 200, np.uint8)
    film[:10, :10] = 255  # a burnt-in marker in the corner
    mask = two_lungs()
    view = lung_view(film, mask, equalise=False)
    top, bottom, left, right = bounding_box(mask)
    assert view.shape == (bottom - top, right - left, 3)
    assert not (view == 255).any()  # the marker is outside the view
    assert (view[:, :, 0] == 0).any() and (view[:, :, 0] == 200).any()  # between the lungs: black
    assert lung_view(film, mask, equalise=False, mask_outside=False).min() == 200


def test_lung_view_of_an_empty_mask_is_the_whole_film():
    film = np.random.default_rng(1).integers(0, 255, (40, 30)).astype(np.uint8)
    view = lung_view(film, np.zeros((40, 30), bool), equalise=False)
    assert view.shape == (40, 30, 3) and np.array_equal(view[..., 0], film)


def test_hide_lungs_and_its_inverse_fill_with_the_mean_grey():
    film = np.random.default_rng(2).integers(0, 255, (100, 80)).astype(np.uint8)
    mask = two_lungs()
    fill = np.uint8(round(float(film.mean())))
    hidden, only = hide_lungs(film, mask), hide_lungs(film, mask, keep_lungs=True)
    assert (hidden[mask] == fill).all() and np.array_equal(hidden[~mask], film[~mask])
    assert (only[~mask] == fill).all() and np.array_equal(only[mask], film[mask])
    assert np.array_equal(masked(film, "lungs_hidden", mask), hidden)


def test_clean_mask_keeps_the_two_largest_regions_and_fills_holes():
    mask = two_lungs()
    mask[50, 20] = False  # a hole
    mask[2:4, 2:4] = True  # a speck
    cleaned = clean_mask(mask)
    assert cleaned[50, 20] and not cleaned[2:4, 2:4].any()
    assert plausible(cleaned) and not plausible(np.zeros_like(mask))


def test_dice():
    a = two_lungs()
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
