"""The lung segmenter as the pipeline fits it (64 px, on the bundled external normals): its Dice on masks it
was not fitted on, and its masks on the bundled COVID-19 Radiography Database films."""

import numpy as np
import pytest

from cxr.data.images import decode_image
from cxr.data.lung_masks import read_masked_films
from cxr.data.lung_view import lung_view
from cxr.model.segmenter import Segmenter, fit_and_measure, plausible
from cxr.params import load_params
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    lp = load_params().lungs
    names, films, masks = read_masked_films(lp.masks_dir)
    segmenter, report = fit_and_measure(names, films, masks, lp.fit_share, lp.size, lp.epochs, lp.seed)
    folder = tmp_path_factory.mktemp("lungs")
    segmenter.save(folder)
    return Segmenter.load(folder / "lungs.keras"), report


def test_dice_on_held_out_masks_is_high_with_a_tight_interval(fitted):
    _, report = fitted
    assert report["n_held_out"] == 87 and report["n_fit"] == 87
    assert report["dice"] >= 0.93 and report["dice_ci95"][0] >= 0.92 and report["dice_min"] >= 0.8


def test_it_finds_plausible_lungs_on_the_training_database_films(fitted):
    segmenter, _ = fitted
    files = sorted(SAMPLE.glob("COVID/*.png"))[:30] + sorted(SAMPLE.glob("Normal/*.png"))[:30]
    films = [decode_image(f.read_bytes(), f.name)[0] for f in files]
    masks = segmenter.masks(films)
    assert np.mean([plausible(m) for m in masks]) >= 0.95
    for film, mask in zip(films, masks, strict=True):
        assert mask.shape == film.shape[:2]
        view = lung_view(film, mask)
        assert view.shape[0] <= film.shape[0] and view.shape[1] <= film.shape[1]
        assert (view == 0).any()  # outside the lungs is black


def test_a_reloaded_segmenter_gives_the_same_masks(fitted, tmp_path):
    segmenter, _ = fitted
    segmenter.save(tmp_path)
    again = Segmenter.load(tmp_path / "lungs.keras")
    film = decode_image(sorted(SAMPLE.glob("Normal/*.png"))[0].read_bytes())[0]
    assert np.array_equal(segmenter.masks([film])[0], again.masks([film])[0])
