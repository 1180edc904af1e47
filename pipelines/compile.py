"""Compile the training pipeline to a Kubeflow Pipelines package (YAML); `pipelines.remote` submits it."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from components.steps import CPU_IMAGE, GPU_IMAGE
from cxr.params import ClusterParams, Params
from pipelines.training import build_pipeline


def image_names(registry: str, tag: str) -> dict[str, str]:
    """Placeholder image -> the real reference in `registry` at `tag`."""
    registry = registry.rstrip("/")
    return {image: f"{registry}/{image.split(':')[0]}:{tag}" for image in (CPU_IMAGE, GPU_IMAGE)}


def compile_pipeline(
    output: str | Path, params: Params, data_version: str = "unversioned", git_commit: str = "unknown"
) -> Path:
    """Write the package: parameter defaults, component images, data source and GPU placement from params.cluster."""
    cluster: ClusterParams = params.cluster
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(
        dict(cluster.gpu_node_selector),
        [dict(t) for t in cluster.gpu_tolerations],
        image_names(cluster.image_registry, cluster.image_tag),
        data_secret="" if cluster.data_dir else cluster.dvc_secret,
        data_endpoint_url="" if cluster.data_dir else cluster.dvc_endpoint_url,
        mlflow_secret=cluster.mlflow_secret,
    )
    compiler.Compiler().compile(
        pipeline,
        str(output),
        pipeline_parameters={
            "data_dir": cluster.data_dir,
            "dvc_remote": "" if cluster.data_dir else cluster.dvc_remote,
            "params_json": params.to_json(),
            "tracking_uri": cluster.tracking_uri,
            "data_version": data_version,
            "git_commit": git_commit,
        },
    )
    return output
