"""Run the training pipeline with kfp's local runner (subprocesses in this environment)."""

from __future__ import annotations

import contextlib
import datetime
import logging
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from kfp import local

from components.parameters import parameter_values
from cxr.data.versions import dir_md5
from cxr.errors import CxrError
from cxr.params import Params, project_root
from cxr.tracking import runs as tracking
from cxr.tracking.record import RunRecord
from cxr.tracking.signature import code_version
from pipelines.compile import image_names, recorded_images
from pipelines.kfp_pipeline import build_pipeline


@dataclass
class PipelineOutcome:
    run_id: str
    status: str
    metrics: dict = field(default_factory=dict)
    gate_passed: bool | None = None
    gate_outcome: str = ""
    gate_reason: str = ""
    gate_advice: str = ""
    registered_version: str = ""
    model_uri: str = ""
    error: str = ""
    run_name: str = ""
    experiment_id: str = ""
    data_version: str = ""
    git_commit: str = ""
    failed_step: str = ""
    shortcut_verdict: str = ""


def new_run_name() -> str:
    return f"pipeline-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


RUNNERS = ("subprocess", "docker")


def run_local(
    params: Params,
    data_dir: str | Path,
    tracking_uri: str,
    run_name: str = "",
    pipeline_root: str | Path | None = None,
    runner: str = "subprocess",
    gpu: bool = False,
    cache: bool = True,
) -> PipelineOutcome:
    """Run every step on this machine and return what the MLflow run recorded (metrics, gate, version).

    runner "subprocess": each step a subprocess of this Python. "docker": each step in its container image
    (params.cluster's names and tag, `make images`), through kfp's DockerRunner; training in the CPU
    components image, or in the GPU training image with `gpu`. With `cache`, ingest and validation are
    reused from an earlier run on the same data version, parameters and code (kfp's local cache).
    """
    if runner not in RUNNERS:
        raise CxrError(f"Unknown runner '{runner}'; use one of: {', '.join(RUNNERS)}.")
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise CxrError(
            f"Data folder {data_dir} does not exist; pass --data with a folder of class sub-folders "
            "(or run `dvc pull` to fetch the bundled sample)."
        )
    run_name = run_name or new_run_name()
    tracking.configure(tracking_uri, params.mlflow.experiment)
    pipeline_root = Path(pipeline_root or project_root() / ".kfp" / "outputs").resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    requested = tracking.data_version()
    # ingest and validation are reused from an earlier run on the same folder content (its md5 is part of
    # ingest's cache key, whatever data.dvc names), parameters and code
    folder_version = dir_md5(data_dir) if cache else ""
    if runner == "docker":
        task_runner, launch, images, recorded = _docker(params, data_dir, tracking_uri, gpu)
    else:
        task_runner, launch, images, recorded = (
            local.SubprocessRunner(use_venv=False),
            contextlib.nullcontext(),
            None,
            {},
        )
    local.init(runner=task_runner, pipeline_root=str(pipeline_root), raise_on_error=False, enable_caching=cache)
    with launch, cache_hits_shown(), warnings.catch_warnings():
        # the tasks' cluster settings (display names, CPU, memory, accelerator) are for the compiled
        # pipeline; kfp's local runner says, for each task, that it ignores them: expected here
        warnings.filterwarnings("ignore", r"Task '.*': settings \[.*\] have no effect in the current local runner")
        build_pipeline(params, images=images)(
            data_dir=str(data_dir),
            tracking_uri=tracking_uri,
            run_name=run_name,
            data_version=requested,
            folder_version=folder_version,
            git_commit=tracking.git_commit(),
            code_version=code_version(),
            **recorded,
            **parameter_values(params),
        )
    return read_outcome(tracking_uri, params.mlflow.experiment, run_name)


def _docker(params: Params, data_dir: Path, tracking_uri: str, gpu: bool):
    """(kfp's DockerRunner, the context that keeps its containers reliable, the images the pipeline's
    placeholders become, those images by digest for the MLflow run's tags)."""
    from components.sources import CPU_IMAGE, GPU_IMAGE
    from pipelines import docker_runner

    names = image_names(params.cluster.image_registry, params.cluster.image_tag)
    images = {CPU_IMAGE: names[CPU_IMAGE], GPU_IMAGE: names[GPU_IMAGE if gpu else CPU_IMAGE]}
    identities = docker_runner.require_images(sorted(set(images.values())))
    mounts = {data_dir: "ro"}
    if tracking.is_local(tracking_uri):  # the local store, at the same path inside the containers
        mounts[Path(tracking_uri.removeprefix("sqlite:///").removeprefix("file://")).resolve().parent] = "rw"
    recorded = recorded_images({key: identities[ref] for key, ref in images.items()})
    return docker_runner.runner(gpu), docker_runner.reliable_containers(mounts), images, recorded


@contextlib.contextmanager
def cache_hits_shown():
    """kfp's local runner logs a cache hit at INFO on the root logger, which is silent by default: let
    those lines through (its own handler prints them; the progress view shows the step as reused)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))
    try:
        yield
    finally:
        root.setLevel(level)


def read_outcome(tracking_uri: str, experiment: str, run_name: str) -> PipelineOutcome:
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string=f"attributes.run_name = '{run_name}'", output_format="list"
    )
    if not runs:
        raise CxrError(
            f"The pipeline run '{run_name}' left no MLflow run in {tracking_uri}; see the step logs for the failure."
        )
    run = RunRecord.from_run(runs[0])
    return PipelineOutcome(
        run_id=run.lineage.run_id,
        status=run.status,
        metrics=run.metrics,
        gate_passed=run.gate.passed,
        gate_outcome=run.gate.outcome,
        gate_reason=run.gate.reason,
        gate_advice=run.gate.advice,
        registered_version=run.registered_version,
        model_uri=run.model_uri,
        error=run.error,
        run_name=run_name,
        experiment_id=run.experiment_id,
        data_version=run.lineage.data_version,
        git_commit=run.lineage.git_commit,
        failed_step=run.failed_step,
        shortcut_verdict=run.note("shortcut.verdict"),
    )
