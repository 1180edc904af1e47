"""Where a step logs (the pipeline's MLflow parent run), and the one place that opens that run."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow

from cxr.data.versions import default_remote, dir_md5, fetch_version, repository_path
from cxr.errors import CxrError
from cxr.params import Params, project_root
from cxr.tracking import runs as tracking
from cxr.tracking.record import lineage_tags


@dataclass(frozen=True)
class RunContext:
    """Where a step logs: the tracking store and the pipeline's parent run."""

    tracking_uri: str
    parent_run_id: str


def finite(metrics: dict) -> dict:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def log_to_parent(ctx: RunContext, metrics: dict) -> None:
    """Summary figures on the pipeline's parent run too, where the UI's compare view reads them."""
    now = int(time.time() * 1000)
    batch = [mlflow.entities.Metric(k, float(v), now, 0) for k, v in metrics.items()]
    mlflow.MlflowClient().log_batch(ctx.parent_run_id, metrics=batch)


def resolve_data(data_dir: str, requested_version: str, dvc_remote: str = "", scratch: str = "") -> tuple[str, str]:
    """The folder a run reads and its DVC version, computed from the files themselves.

    With `dvc_remote` (a cluster run) the folder is fetched at `requested_version` from that remote into
    `scratch`; otherwise `data_dir` is read where it is (a checkout or a mounted volume).
    """
    if dvc_remote:
        data_dir = str(fetch_version(dvc_remote, requested_version, scratch))
    if not Path(data_dir).is_dir():
        raise CxrError(
            f"Data folder {data_dir} does not exist; pass a folder of class sub-folders "
            "(or `dvc pull` the bundled sample, or give the pipeline a DVC remote to fetch from)."
        )
    actual = dir_md5(data_dir)
    if requested_version not in ("", "unversioned", actual):
        print(f"data version: read {actual}, not the requested {requested_version} (the folder differs from it)")
    return data_dir, actual


def start_lineage_run(
    params: Params,
    tracking_uri: str,
    run_name: str,
    actual_version: str,
    requested_version: str,
    git_commit: str,
    orchestrator: str,
    extra_tags: dict | None = None,
    data_dir: str = "",
    dvc_remote: str = "",
) -> RunContext:
    """The pipeline's MLflow parent run, opened with the lineage every front-end records (data version
    read and asked for, where the data is versioned, code commit, orchestrator) and the effective
    parameters. `data_dir`, `dvc_remote`: the folder read and the remote it came from ("": the
    repository's own, when there is one)."""
    root = project_root()
    path = repository_path(data_dir, root) if data_dir else params.ingest.data_dir
    tags = {
        **lineage_tags(actual_version, requested_version, git_commit, path, dvc_remote or default_remote(root)),
        "orchestrator": orchestrator,
        **(extra_tags or {}),
    }
    return RunContext(tracking_uri, tracking.start_pipeline_run(params, tracking_uri, run_name, tags))


def open_pipeline_run(
    params: Params,
    tracking_uri: str,
    run_name: str,
    data_dir: str,
    requested_version: str,
    git_commit: str,
    orchestrator: str,
    dvc_remote: str = "",
    scratch: str = "",
    extra_tags: dict | None = None,
) -> tuple[RunContext, str, str]:
    """Resolve the data (`resolve_data`), then open the parent run (`start_lineage_run`). Returns (its
    context, the data folder to read, the data version read)."""
    read_dir, actual = resolve_data(data_dir, requested_version, dvc_remote, scratch)
    given = "" if dvc_remote else data_dir  # the folder as the repository names it, not the fetched copy
    ctx = start_lineage_run(
        params,
        tracking_uri,
        run_name,
        actual,
        requested_version,
        git_commit,
        orchestrator,
        extra_tags,
        given,
        dvc_remote,
    )
    return ctx, read_dir, actual
