"""The drift reference, the test's verdict and report, and the choice of recorded rows (no network)."""

import datetime

import numpy as np
import pytest

from cxr.errors import CxrError
from cxr.safety.drift import DriftReference, detect
from cxr.safety.drift_report import write_report
from cxr.steps.drift_check import choose_rows


@pytest.fixture(scope="module")
def reference():
    mixing = np.random.default_rng(0).normal(size=(60, 60))  # correlated features, like block statistics
    features = np.random.default_rng(1).normal(size=(300, 60)) @ mixing
    return DriftReference.fit(features, components=8), features, mixing


def test_the_reference_projects_to_at_most_32_numbers_and_reloads_identically(reference, tmp_path):
    ref, features, _ = reference
    assert ref.reference.shape == (300, 8) and 0 < ref.meta["explained_variance"] <= 1
    again = DriftReference.load(ref.save(tmp_path))
    assert np.allclose(again.project(features[:5]), ref.project(features[:5]), atol=1e-4)
    wide = DriftReference.fit(np.random.default_rng(1).normal(size=(100, 80)), components=64)
    assert wide.reference.shape[1] == 32
    with pytest.raises(CxrError, match="belongs to another model"):
        ref.project(features[:, :10])


def test_a_sample_from_the_training_population_is_not_drift_and_a_shifted_one_is(reference, tmp_path):
    ref, _, mixing = reference
    same = ref.project(np.random.default_rng(2).normal(size=(100, 60)) @ mixing)  # new images, same population
    verdict = detect(ref, same, alpha=0.01)
    assert not verdict.drift and verdict.n == 100 and verdict.n_reference == 300
    moved = detect(ref, same + np.r_[1.5, np.zeros(7)], alpha=0.01)
    assert moved.drift and moved.p_value < 0.01 and moved.statistic > verdict.statistic
    page = write_report(moved, ref, same + 1.5, tmp_path / "report.html", "a test batch").read_text()
    assert "DRIFT: 100 images against 300 training images" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched from elsewhere


def test_too_few_images_or_another_models_rows_give_no_verdict(reference):
    ref, _, _ = reference
    with pytest.raises(CxrError, match="Only 10 images to test; a drift verdict needs at least 30"):
        detect(ref, np.zeros((10, 8)))
    with pytest.raises(CxrError, match="recorded with another model version"):
        detect(ref, np.zeros((50, 4)))


def test_recorded_rows_of_the_newest_version_with_a_projection_are_tested():
    t = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)

    def row(minutes, version, projection):
        when = t + datetime.timedelta(minutes=minutes)
        return {"created_at": when, "model_version": version, "projection": projection}

    rows = [row(0, "1", [0.0, 1.0]), row(1, "2", [2.0, 3.0]), row(2, "2", None), row(3, "2", [4.0, 5.0])]
    version, chosen = choose_rows(rows, "", max_rows=10)
    assert version == "2" and chosen.tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert choose_rows(rows, "2", max_rows=1)[1].tolist() == [[4.0, 5.0]]  # the newest
    assert choose_rows(rows, "1", max_rows=10)[1].tolist() == [[0.0, 1.0]]
    with pytest.raises(CxrError, match="No recorded prediction of model version 7"):
        choose_rows(rows, "7", 10)
    with pytest.raises(CxrError, match="carries a drift projection"):
        choose_rows([row(0, "1", None)], "", 10)


def test_a_folder_or_a_missing_path_given_as_an_image_says_which_and_the_fix(tmp_path):
    from cxr.errors import not_a_file

    assert not_a_file(tmp_path) == f"{tmp_path} is a folder; pass the image files in it ({tmp_path}/*)."
    assert not_a_file(tmp_path / "x.png") == f"{tmp_path / 'x.png'} does not exist; check the path."
