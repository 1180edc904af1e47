"""The train step's lung half: the classifier is fitted on exactly what the served model reads."""

import numpy as np
import pytest

import cxr.training.run as training
from cxr.data.manifest import ingest, read_manifest, split_frame
from cxr.evaluation.splits import split_features
from cxr.inference.classifier import load_model_dir
from cxr.model.config import ModelConfig
from tests.conftest import tiny

pytestmark = pytest.mark.slow  # fits a segmenter and a network


@pytest.mark.parametrize("view", ["crop", "lungs", "film"])
def test_the_features_training_fits_on_are_what_the_served_model_computes(tiny_data, tmp_path, monkeypatch, view):
    captured = {}
    fit_checks = training.fit_monitors

    def spy(model_dir, dataset_dir, train_frame, val_frame, params, cache=None):
        captured["cache"] = dict(cache)
        return fit_checks(model_dir, dataset_dir, train_frame, val_frame, params, cache)

    monkeypatch.setattr(training, "fit_monitors", spy)
    params = tiny("train.weights=hed", f"lungs.view={view}")
    ingest(tiny_data, tmp_path / "ds", params.ingest)
    training.train_model(tmp_path / "ds", params, tmp_path / "model", log_to_mlflow=False)
    assert ModelConfig.read(tmp_path / "model").input_view == view
    classifier = load_model_dir(tmp_path / "model")
    train = split_frame(read_manifest(tmp_path / "ds"), "train")
    served = split_features(classifier, train, tmp_path / "ds")
    fitted = np.stack([captured["cache"][(f, False)] for f in train["file"]])
    np.testing.assert_allclose(fitted, served, rtol=1e-5, atol=1e-5)
    (tmp_path / "model" / "lungs.keras").unlink()  # without its segmenter the model would read whole films
    if view != "film":
        assert not np.allclose(split_features(load_model_dir(tmp_path / "model"), train, tmp_path / "ds"), served)
