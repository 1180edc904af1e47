"""The frozen-base head fitted on features computed once (cxr.model.fitting.features_once): the same fit as on
images every epoch, and, with every image and its mirror in one full batch, independent of the seed."""

import json

import numpy as np
import pytest

from tests.conftest import tiny

FULL_BATCH = ["train.batch_size=64", "train.epochs=6", "train.learning_rate=0.01", "ood.enabled=false"]


def _train(data, tmp, *overrides):
    import keras

    from cxr.data.manifest import ingest
    from cxr.training import train_model

    params = tiny(*FULL_BATCH, *overrides)
    ingest(data, tmp / "ds", params.ingest)
    result = train_model(tmp / "ds", params, tmp / "model", log_to_mlflow=False)
    model = keras.models.load_model(tmp / "model" / "model.keras", compile=False)
    return result, [np.asarray(w) for w in model.get_layer("probability").get_weights()]


def test_the_cpu_profile_fits_its_head_on_features_computed_once():
    from cxr.model.fitting import features_once
    from cxr.params import load_params

    assert features_once(load_params(), in_model=False)
    assert not features_once(load_params(), in_model=True)  # a GPU augments inside the model
    assert not features_once(load_params(profile="paper"), in_model=False)  # fine-tuned, random augmentation
    coin_toss = ["augment.horizontal_flip=true", "augment.mirror_both=false"]
    assert not features_once(load_params(overrides=coin_toss), in_model=False)
    assert not features_once(load_params(overrides=["augment.zoom=0.1"]), in_model=False)


@pytest.mark.slow  # fits a network
@pytest.mark.parametrize("cv", [0, 3])
def test_features_once_fits_what_images_every_epoch_fit(tiny_data, tmp_path, monkeypatch, cv):
    """Same best epoch, history and weights (to float rounding) as the network fitted on its images."""
    import cxr.model.fitting

    once, weights_once = _train(tiny_data, tmp_path / "once", f"evaluate.cv_folds={cv}")
    monkeypatch.setattr(cxr.model.fitting, "features_once", lambda params, in_model: False)
    every, weights_every = _train(tiny_data, tmp_path / "every", f"evaluate.cv_folds={cv}")
    assert once.best_epoch == every.best_epoch
    configs = [json.loads((tmp_path / run / "model" / "config.json").read_text()) for run in ("once", "every")]
    assert [c["fitted_on"] for c in configs] == ["the base's features, computed once", "images, every epoch"]
    assert np.allclose(once.history["loss"], every.history["loss"], rtol=1e-4, atol=1e-5)
    for a, b in zip(weights_once, weights_every, strict=True):
        assert np.allclose(a, b, rtol=1e-3, atol=1e-5)
    assert any(np.abs(w).max() > 0 for w in weights_once)  # it learned something (the kernel starts at zero)


@pytest.mark.slow  # fits a network
def test_with_every_image_and_its_mirror_in_one_batch_the_seed_changes_nothing(tiny_data, tmp_path):
    # pretrained (hed) weights: with train.weights=none the seed draws the base itself
    _, first = _train(tiny_data, tmp_path / "seed1", "train.seed=1", "train.weights=hed")
    _, second = _train(tiny_data, tmp_path / "seed2", "train.seed=2", "train.weights=hed")
    for a, b in zip(first, second, strict=True):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-6)
