"""`train.runtime: auto` (the default; openvino int8 where the base is frozen with block statistics): the frozen
base's pass converted once per model (int8 calibrated on training images), logged with it and used by every
front-end, agrees with TensorFlow's pass, the reference, on real X-rays within the stated tolerance
(docs/performance.md)."""

from pathlib import Path

import mlflow
import numpy as np
import pytest

from cxr.data.images import decode_image
from cxr.inference.classifier import XrayClassifier, load_classifier, log_model
from cxr.model.config import MODEL_FILE, ModelConfig
from cxr.model.fitting import FitSetup
from cxr.model.segmenter import SEGMENTER_FILE
from cxr.params import TrainParams
from cxr.training.run import converted_pass
from tests.conftest import SAMPLE, tiny, train_on_sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runtime")
    defaults = (f"train.runtime={TrainParams.runtime}", f"train.precision={TrainParams.precision}")  # not TINY's
    return train_on_sample(tmp, *defaults, "train.weights=hed", "train.image_size=64", "train.batch_size=8")


def load(model_dir: Path) -> XrayClassifier:
    """The model folder as training's checks load it: the network, its config and its lung segmenter."""
    config = ModelConfig.read(model_dir)
    return XrayClassifier().load(model_dir / MODEL_FILE, config, lungs_path=model_dir / SEGMENTER_FILE)


def sample_arrays(limit: int = 64) -> list[np.ndarray]:
    files = sorted(SAMPLE.rglob("*.png"))
    files = [files[i] for i in np.random.default_rng(1).permutation(len(files))[:limit]]
    return [decode_image(f.read_bytes(), str(f))[0] for f in files]


def test_the_converted_pass_is_saved_with_the_model_and_used(int8_model):
    config = ModelConfig.read(int8_model)
    assert (config.runtime, config.precision) == ("openvino", "int8")
    assert (int8_model / "extractor.xml").is_file() and (int8_model / "extractor.bin").is_file()
    classifier = load(int8_model)
    assert classifier.extractor is not None and classifier.extractor.precision == "int8"


def test_int8_agrees_with_tensorflow_on_real_xrays(int8_model, monkeypatch):
    config = ModelConfig.read(int8_model)
    arrays = sample_arrays()
    converted = load(int8_model)
    monkeypatch.setenv("CXR_RUNTIME", "tensorflow")  # the reference path, whatever the model's runtime
    reference = load(int8_model)
    assert reference.extractor is None
    p_int8, features_int8 = converted.assess_arrays(arrays)
    p_fp32, features_fp32 = reference.assess_arrays(arrays)
    changed = int(np.sum((p_int8 >= config.threshold) != (p_fp32 >= config.threshold)))
    assert changed <= 1, f"{changed} of {len(arrays)} labels changed"  # the bench's bar: at most 0.5% on 500
    assert np.max(np.abs(p_int8 - p_fp32)) < 0.1 and np.mean(np.abs(p_int8 - p_fp32)) < 0.02
    # the gate's features (log1p of the block statistics) stay close where they carry weight
    assert np.median(np.abs(features_int8 - features_fp32)) < 0.05


def test_the_registered_model_carries_its_converted_pass(int8_model, tracking_uri):
    with mlflow.start_run():
        info = log_model(int8_model)
    loaded = load_classifier(info.model_uri)
    assert loaded.extractor is not None
    arrays = sample_arrays(8)
    local = load(int8_model)
    assert np.allclose(loaded.predict_arrays(arrays), local.predict_arrays(arrays), atol=1e-6)


def test_auto_runs_tensorflow_where_the_pass_is_not_fixed_or_a_gpu_is_visible(tmp_path):
    def resolved(*overrides, gpu=False):
        setup = FitSetup(tmp_path, "COVID", tiny("train.runtime=auto", *overrides), tmp_path)
        return converted_pass(setup, train_frame=None, gpu=gpu)  # None: TensorFlow's pass; nothing converted

    assert resolved("train.pooling=average") is None
    assert resolved("train.freeze_base=false") is None
    assert resolved(gpu=True) is None
    assert not (tmp_path / "extractor.xml").exists()


def test_a_runtime_the_profile_cannot_use_is_refused_before_training(tmp_path):
    from cxr.errors import CxrError

    with pytest.raises(CxrError, match="train.runtime openvino converts the frozen base"):
        train_on_sample(tmp_path, "train.runtime=openvino", "train.pooling=average")


def test_serve_runtime_chooses_the_pass_the_web_app_runs(int8_model, tracking_uri, tmp_path):
    """The registered int8 model loads with its converted pass; `cxr serve` with serve.runtime tensorflow
    serves TensorFlow's pass from it instead, names it in /readyz and in each answer, and agrees with the
    converted pass on the film."""
    import requests
    import yaml

    from tests.integration.conftest import start_server

    with mlflow.start_run():
        info = log_model(int8_model)
    own = load_classifier(info.model_uri)
    assert own.runtime == "openvino int8"
    raw = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    raw["serve"] |= {"runtime": "tensorflow", "records_url": "off"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    film = SAMPLE / "COVID" / "COVID-1.png"
    proc, base = start_server(tmp_path, tracking_uri, "--model", info.model_uri, "--params", str(params))
    try:
        ready = requests.get(f"{base}/readyz", timeout=10).json()
        files = {"file": ("x.png", film.read_bytes())}
        answer = requests.post(f"{base}/api/predict?allow_ood=true", files=files, timeout=120).json()
    finally:
        proc.terminate()
        proc.wait(timeout=90)
    assert ready["runtime"] == "tensorflow" and answer["runtime"] == "tensorflow"
    expected = own.predict_arrays([decode_image(film.read_bytes(), str(film))[0]])[0]
    assert abs(answer["probability"] - expected) < 0.1
