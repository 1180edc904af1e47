"""Compile the training pipeline to a Kubeflow Pipelines package (YAML); `pipelines.remote` submits it."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from components.sources import CPU_IMAGE, GPU_IMAGE
from cxr.data.versions import project_dvc_remote
from cxr.errors import CxrError
from cxr.params import ClusterParams, Params
from cxr.tracking.signature import code_version
from pipelines.image_digests import load_digests, pinned
from pipelines.kfp_pipeline import build_pipeline


def image_names(registry: str, tag: str) -> dict[str, str]:
    """Placeholder image -> the real reference in `registry` at `tag`."""
    registry = registry.rstrip("/")
    return {image: f"{registry}/{image.split(':')[0]}:{tag}" for image in (CPU_IMAGE, GPU_IMAGE)}


def recorded_images(images: dict[str, str], on_gpu: bool = True) -> dict[str, str]:
    """The `image_cpu` and `image_gpu` pipeline inputs: the steps' images as compiled, which the MLflow run
    records (on a CPU-only cluster the training step runs in the CPU image: no GPU image)."""
    return {"image_cpu": images[CPU_IMAGE], "image_gpu": images[GPU_IMAGE] if on_gpu else ""}


def data_source(cluster: ClusterParams) -> dict[str, str]:
    """Where the cluster's ingest reads: a mounted folder (data_dir, from data_pvc) or the DVC remote."""
    if cluster.data_dir and not cluster.data_pvc:
        raise CxrError(
            f"cluster.data_dir is {cluster.data_dir}, but no volume is mounted there: set cluster.data_pvc to the "
            "PersistentVolumeClaim that holds the dataset (or empty data_dir to fetch data.dvc's version)."
        )
    if cluster.data_dir:
        return {"data_dir": cluster.data_dir, "dvc_remote": ""}
    return {"data_dir": "", "dvc_remote": cluster.dvc_remote or project_dvc_remote()}


def cluster_pipeline(params: Params, data_version: str = "unversioned", git_commit: str = "unknown"):
    """The pipeline as the cluster runs it: run parameters defaulting to `params`, location inputs, images
    (by digest where `make images-push` recorded one: pipelines/image_digests.py), data source, secrets and GPU
    placement from params.cluster."""
    cluster: ClusterParams = params.cluster
    images = pinned(image_names(cluster.image_registry, cluster.image_tag), load_digests())
    inputs = {
        **data_source(cluster),
        "tracking_uri": cluster.tracking_uri,
        "mlflow_ui": cluster.mlflow_ui_url,
        "data_version": data_version,
        "git_commit": git_commit,
        "code_version": code_version(),
        **recorded_images(images, bool(cluster.accelerator)),
    }
    return build_pipeline(
        params,
        inputs,
        images,
        data_secret="" if cluster.data_dir else cluster.dvc_secret,
        data_endpoint_url="" if cluster.data_dir else cluster.dvc_endpoint_url,
        mlflow_secret=cluster.mlflow_secret,
        gpu_placement=True,
        retries=True,
        data_pvc=cluster.data_pvc if cluster.data_dir else "",
    )


def compile_pipeline(
    output: str | Path, params: Params, data_version: str = "unversioned", git_commit: str = "unknown"
) -> Path:
    """Write the package (see `cluster_pipeline`)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(cluster_pipeline(params, data_version, git_commit), str(output))
    return output
