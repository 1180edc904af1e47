"""A compiled package names each step's image by the digest `make images-push` recorded, and tells the
MLflow run which; without a recorded digest it keeps the tag."""

import json

import pytest
import yaml

from cxr.errors import CxrError
from cxr.params import load_params
from pipelines.compile import compile_pipeline
from pipelines.image_digests import DIGESTS_ENV, load_digests

CPU = "ghcr.io/cxr/cxr-python-components:0.1.0"
PINNED = "ghcr.io/cxr/cxr-python-components@sha256:" + "b" * 64


def images_and_inputs(path):
    spec = next(yaml.safe_load_all(path.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    return images, {k: inputs[k].get("defaultValue") for k in ("image_cpu", "image_gpu")}


def test_recorded_digests_pin_the_step_images_and_reach_the_run_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv(DIGESTS_ENV, str(tmp_path / "none.json"))
    images, inputs = images_and_inputs(compile_pipeline(tmp_path / "tagged.yaml", load_params()))
    assert CPU in images and inputs["image_cpu"] == CPU  # nothing recorded: the tag
    digests = tmp_path / "image-digests.json"
    digests.write_text(json.dumps({CPU: PINNED}))
    monkeypatch.setenv(DIGESTS_ENV, str(digests))
    images, inputs = images_and_inputs(compile_pipeline(tmp_path / "pinned.yaml", load_params()))
    assert PINNED in images and CPU not in images and inputs["image_cpu"] == PINNED
    assert inputs["image_gpu"] == "ghcr.io/cxr/cxr-python-train-gpu:0.1.0"  # no digest recorded for it: its tag


def test_a_digests_file_without_digests_is_refused_with_the_fix(tmp_path):
    bad = tmp_path / "image-digests.json"
    bad.write_text(json.dumps({CPU: CPU}))
    with pytest.raises(CxrError, match="references without a digest .* run `make images-push` again"):
        load_digests(bad)
    bad.write_text("{not json")
    with pytest.raises(CxrError, match="is not JSON"):
        load_digests(bad)
