"""serve.runtime and $CXR_RUNTIME: which pass a loaded model runs, and one sentence for a value that is none."""

import pytest

from cxr.errors import CxrError
from cxr.inference.runtime import served_runtime
from cxr.params import from_dict


def test_the_model_s_own_pass_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("CXR_RUNTIME", raising=False)
    assert served_runtime() == "model"
    monkeypatch.setenv("CXR_RUNTIME", " TensorFlow ")
    assert served_runtime() == "tensorflow"


def test_an_unknown_runtime_is_one_sentence_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CXR_RUNTIME", "onnx")
    with pytest.raises(CxrError, match=r"\$CXR_RUNTIME is 'onnx'; set it to model or tensorflow"):
        served_runtime()


def test_serve_runtime_is_checked_when_params_load():
    assert from_dict({"serve": {"runtime": "tensorflow"}}).serve.runtime == "tensorflow"
    with pytest.raises(CxrError, match="serve.runtime is 'openvino'; choose one of model, tensorflow"):
        from_dict({"serve": {"runtime": "openvino"}})
