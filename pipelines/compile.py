"""Compile the training pipeline to a Kubeflow Pipelines package (YAML)."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.steps import CPU_IMAGE, GPU_IMAGE
from cxr.params import Params

DEFAULT_REGISTRY = "ghcr.io/cxr"
DEFAULT_TAG = "0.1.0"
# In-cluster defaults (infra/k8s): the MLflow service and the data baked into / mounted in the image.
CLUSTER_TRACKING_URI = "http://mlflow.cxr.svc.cluster.local:5000"
CLUSTER_DATA_DIR = "/app/data/covid-radiography-sample"


def image_names(registry: str, tag: str) -> dict[str, str]:
    """Placeholder image -> the real reference in `registry` at `tag`."""
    registry = registry.rstrip("/")
    return {image: f"{registry}/{image.split(':')[0]}:{tag}" for image in (CPU_IMAGE, GPU_IMAGE)}


def compile_pipeline(
    output: str | Path,
    params: Params,
    image_registry: str = DEFAULT_REGISTRY,
    image_tag: str = DEFAULT_TAG,
    tracking_uri: str = CLUSTER_TRACKING_URI,
    data_dir: str = CLUSTER_DATA_DIR,
    data_version: str = "unversioned",
    git_commit: str = "unknown",
) -> Path:
    """Write the package with the given parameter defaults and component images; returns its path."""
    from kfp import compiler

    from pipelines.training import training_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        training_pipeline,
        str(output),
        pipeline_parameters={
            "data_dir": data_dir,
            "params_json": params.to_json(),
            "tracking_uri": tracking_uri,
            "data_version": data_version,
            "git_commit": git_commit,
        },
    )
    images = image_names(image_registry, image_tag)
    docs = list(yaml.safe_load_all(output.read_text()))
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        container["image"] = images.get(container.get("image"), container.get("image"))
    output.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return output
