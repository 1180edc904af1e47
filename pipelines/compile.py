"""Compile the training pipeline to a Kubeflow Pipelines package (YAML); submit it to a cluster."""

from __future__ import annotations

from pathlib import Path

from components.steps import CPU_IMAGE, GPU_IMAGE
from cxr.errors import CxrError
from cxr.params import ClusterParams, Params


def image_names(registry: str, tag: str) -> dict[str, str]:
    """Placeholder image -> the real reference in `registry` at `tag`."""
    registry = registry.rstrip("/")
    return {image: f"{registry}/{image.split(':')[0]}:{tag}" for image in (CPU_IMAGE, GPU_IMAGE)}


def compile_pipeline(
    output: str | Path, params: Params, data_version: str = "unversioned", git_commit: str = "unknown"
) -> Path:
    """Write the package: parameter defaults, component images, data source and GPU placement from params.cluster."""
    from kfp import compiler

    from pipelines.training import build_pipeline

    cluster: ClusterParams = params.cluster
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(
        dict(cluster.gpu_node_selector),
        [dict(t) for t in cluster.gpu_tolerations],
        image_names(cluster.image_registry, cluster.image_tag),
        data_secret="" if cluster.data_dir else cluster.dvc_secret,
        data_endpoint_url="" if cluster.data_dir else cluster.dvc_endpoint_url,
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


def submit_pipeline(package: Path, host: str, experiment: str, run_name: str, namespace: str | None = None) -> str:
    """Submit a compiled package to a Kubeflow Pipelines endpoint; returns the KFP run id."""
    import kfp

    try:
        client = kfp.Client(host=host, namespace=namespace)
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments={"run_name": run_name},
            run_name=run_name,
            experiment_name=experiment,
            enable_caching=False,
        )
    except Exception as exc:  # kfp surfaces connection, auth and API errors as many types
        raise CxrError(
            f"Submitting to Kubeflow Pipelines at {host} failed ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:200]}); check --host and your credentials."
        ) from exc
    return run.run_id
