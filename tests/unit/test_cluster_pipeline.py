"""The pipeline as compiled for a cluster: where training runs (one GPU on the GPU nodes by default; on a
CPU-only cluster, cluster.accelerator empty, no GPU request, node selector or toleration, in the CPU image)
and where ingest reads (the DVC project's own remote, or a mounted volume that is never cached)."""

import dataclasses

import pytest
import yaml
from dvc.repo import Repo

from cxr.errors import CxrError
from cxr.params import load_params
from pipelines.compile import compile_pipeline


def compiled(tmp_path, **cluster) -> tuple[dict, dict, dict]:
    params = load_params(None, "cpu")
    params = dataclasses.replace(params, cluster=dataclasses.replace(params.cluster, **cluster))
    spec, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "pipeline.yaml", params).read_text())
    compiled.spec, compiled.platform = spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    placement = compiled.platform.get("exec-train", {})
    return spec["deploymentSpec"]["executors"], placement, spec["root"]["inputDefinitions"]["parameters"]


def test_the_training_task_asks_for_one_gpu_on_the_gpu_nodes_by_default(tmp_path):
    executors, placement, inputs = compiled(tmp_path, image_registry="r.example/cxr", image_tag="1")
    train = executors["exec-train"]["container"]
    assert (train["resources"]["accelerator"]["resourceType"], train["resources"]["accelerator"]["resourceCount"]) == (
        "nvidia.com/gpu",
        "1",
    )
    assert train["image"] == "r.example/cxr/cxr-python-train-gpu:1"
    assert placement["nodeSelector"]["labels"] and placement["tolerations"]
    assert inputs["image_gpu"]["defaultValue"] == "r.example/cxr/cxr-python-train-gpu:1"


def test_a_cpu_only_cluster_gets_no_gpu_request_and_trains_in_the_cpu_image(tmp_path):
    executors, placement, inputs = compiled(tmp_path, image_registry="r.example/cxr", image_tag="1", accelerator="")
    train = executors["exec-train"]["container"]
    assert "accelerator" not in train.get("resources", {})
    assert train["image"] == executors["exec-ingest"]["container"]["image"] == "r.example/cxr/cxr-python-components:1"
    assert "nodeSelector" not in placement and "tolerations" not in placement
    assert inputs["image_gpu"]["defaultValue"] == ""  # the run records no GPU image


def ingest_cached(spec: dict) -> bool:
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    return tasks["ingest"]["cachingOptions"].get("enableCache", False)


def test_ingest_fetches_from_the_dvc_projects_own_remote_and_is_cached_on_its_version(tmp_path):
    _, _, inputs = compiled(tmp_path)
    assert inputs["dvc_remote"]["defaultValue"] == Repo(".").config["remote"]["s3"]["url"]  # one definition
    assert inputs["data_dir"]["defaultValue"] == "" and ingest_cached(compiled.spec)
    _, _, inputs = compiled(tmp_path, dvc_remote="s3://elsewhere/store")  # cluster.dvc_remote overrides it
    assert inputs["dvc_remote"]["defaultValue"] == "s3://elsewhere/store"


def test_a_dataset_on_a_volume_is_mounted_for_ingest_and_never_cached(tmp_path):
    _, _, inputs = compiled(tmp_path, data_dir="/data/cxr", data_pvc="cxr-dataset")
    assert inputs["data_dir"]["defaultValue"] == "/data/cxr" and inputs["dvc_remote"]["defaultValue"] == ""
    (mount,) = compiled.platform["exec-ingest"]["pvcMount"]
    assert mount["mountPath"] == "/data/cxr" and mount["constant"] == "cxr-dataset"
    assert not ingest_cached(compiled.spec)  # the volume can change in place under the same inputs
    with pytest.raises(CxrError, match="set cluster.data_pvc to the PersistentVolumeClaim"):
        compiled(tmp_path, data_dir="/data/cxr")
