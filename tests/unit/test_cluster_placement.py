"""Where the compiled pipeline's training task runs: one GPU on the GPU nodes by default, and on a CPU-only
cluster (cluster.accelerator empty) no GPU request, node selector or toleration, in the CPU image."""

import dataclasses

import yaml

from cxr.params import load_params
from pipelines.compile import compile_pipeline


def compiled(tmp_path, **cluster) -> tuple[dict, dict, dict]:
    params = load_params(None, "cpu")
    params = dataclasses.replace(params, cluster=dataclasses.replace(params.cluster, **cluster))
    spec, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "pipeline.yaml", params).read_text())
    placement = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].get("exec-train", {})
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
