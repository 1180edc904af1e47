"""The train step's lung half: the classifier is fitted on exactly what the served model reads."""

import numpy as np
import pytest

import cxr.training.run as training
from cxr.data.manifest import ingest, read_manifest, split_frame
from cxr.evaluation.splits import split_batches, split_features
from cxr.inference.classifier import load_model_dir
from cxr.model.block_stats import GATE_WIDTH, build_scorer
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
    # a cached row: the input gate's features, then the head's input (each zone's block statistics)
    np.testing.assert_allclose(fitted[:, :GATE_WIDTH], served, rtol=1e-5, atol=1e-5)
    pooled = build_scorer(classifier.keras_model, pooled=True)
    head_input = [pooled.predict_on_batch(classifier.preprocess(a))[1] for a in split_batches(train, tmp_path / "ds")]
    assert fitted.shape[1] > GATE_WIDTH
    np.testing.assert_allclose(fitted[:, GATE_WIDTH:], np.concatenate(head_input), rtol=1e-5, atol=1e-5)
    (tmp_path / "model" / "lungs.keras").unlink()  # without its segmenter the model would read whole films
    if view != "film":
        assert not np.allclose(split_features(load_model_dir(tmp_path / "model"), train, tmp_path / "ds"), served)


def test_the_segmenter_fit_is_reused_for_the_same_masks_parameters_and_code(tmp_path, monkeypatch):
    import json

    import cxr.model.lung_inputs as lung_inputs

    monkeypatch.setenv("CXR_CACHE_DIR", str(tmp_path / "cache"))
    params = tiny()
    first, report = lung_inputs.fit_segmenter(params, (tmp_path / "a").mkdir() or tmp_path / "a")
    (kept,) = (tmp_path / "cache" / "segmenter").iterdir()
    assert sorted(p.name for p in kept.iterdir()) == ["lungs.keras", "segmenter.json"]

    def no_fit(*args):
        raise AssertionError("the same inputs were fitted again")

    monkeypatch.setattr(lung_inputs, "fit_and_measure", no_fit)
    again, report_again = lung_inputs.fit_segmenter(params, (tmp_path / "b").mkdir() or tmp_path / "b")
    assert report_again == report == json.loads((tmp_path / "b" / "segmenter.json").read_text())
    for w1, w2 in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    with pytest.raises(AssertionError, match="fitted again"):  # another seed is another fit
        lung_inputs.fit_segmenter(tiny("lungs.seed=1"), tmp_path / "b")
