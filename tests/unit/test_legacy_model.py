"""A model logged by the code before the core was grouped into packages still loads and predicts: the
registry holds such versions, and the web app and `cxr predict` must keep serving them."""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cxr.inference.classifier import load_pyfunc
from cxr.model.config import ModelConfig
from tests.conftest import SAMPLE

LEGACY = Path(__file__).parents[1] / "fixtures" / "model-before-packages"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("legacy") / "model"
    shutil.copytree(LEGACY, folder)
    return load_pyfunc(str(folder))


def test_its_config_reads_into_the_typed_config(legacy):
    assert isinstance(legacy.config, ModelConfig)
    assert (legacy.config.image_size, legacy.config.positive_class, legacy.config.negative_class) == (
        32,
        "COVID",
        "Normal",
    )
    # written before temperature_fitted existed: derived from the sentence the old code wrote
    assert legacy.config.temperature_fitted is False and legacy.config.temperature == 1.0


def test_it_loads_with_its_input_gate_and_scope_check_and_predicts(legacy):
    assert legacy.gate is not None and legacy.scope is not None
    xray = (SAMPLE / "COVID" / "COVID-3.png").read_bytes()
    out = legacy.predict(None, pd.DataFrame({"image": [xray]}), params={"allow_ood": True})
    assert list(out.columns) == ["probability", "label", "in_distribution", "ood_score", "reason"]
    probability = float(out["probability"][0])
    assert 0.0 <= probability <= 1.0 and not math.isnan(probability)
    assert out["label"][0] == legacy.config.label_for(probability)


def test_unknown_config_keys_are_ignored_and_missing_ones_take_defaults():
    config = ModelConfig.from_dict(
        {"image_size": 64, "positive_class": "COVID", "negative_class": "Normal", "threshold": 0.4, "new_key": 1}
    )
    assert config.flip_average is False and config.temperature == 1.0 and config.threshold == 0.4
