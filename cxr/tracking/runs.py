"""MLflow set-up: where the store is, the experiment, one parent run per pipeline run, a child per step.

Configured only from entry points (CLI, components, DVC stages), never at import.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import mlflow
import requests
import yaml
from mlflow.exceptions import MlflowException

from cxr.errors import CxrError, first_line
from cxr.params import Params, project_root
from cxr.tracking import record
from cxr.tracking.record import RunRecord
from cxr.tracking.signature import params_hash

# The MLflow 3 UI opens an experiment on its training-runs view (not the GenAI overview) when tagged so.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# MLflow 3's UI opens an experiment on its GenAI overview unless the link asks for the model-training view
UI_VIEW = "?workflowType=machine_learning"


def ui_url(base: str, experiment_id: str, run_id: str = "") -> str:
    """The MLflow UI's page of an experiment's runs, or of one run, in the model-training view."""
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/{page}{UI_VIEW}"


def default_tracking_uri() -> str:
    return f"sqlite:///{project_root() / 'mlflow' / 'mlflow.db'}"


def resolve_tracking_uri(params: Params | None = None, explicit: str = "") -> str:
    """Explicit argument > params mlflow.tracking_uri > $MLFLOW_TRACKING_URI > the local store under mlflow/."""
    return (
        explicit
        or (params.mlflow.tracking_uri if params else "")
        or os.environ.get("MLFLOW_TRACKING_URI", "")
        or default_tracking_uri()
    )


def is_local(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def refusal(exc: BaseException) -> str:
    """One sentence for an MLflow server that refused who we are (401) or what we asked (403), else ''."""
    if not isinstance(exc, MlflowException):
        return ""
    text, code = str(exc), getattr(exc, "error_code", "")
    server = os.environ.get("MLFLOW_TRACKING_URI", "the MLflow server")
    if "error code 401" in text or code == "UNAUTHENTICATED":
        return (
            f"{server} asks you to sign in: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "(ask an admin for an account: cxr team add-user)."
        )
    if "error code 403" in text or code == "PERMISSION_DENIED":
        who = os.environ.get("MLFLOW_TRACKING_USERNAME", "you")
        return f"{server} refused this to {who}: your role does not allow it (ask an admin or a release manager)."
    return ""


def require_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """A tracking server that refuses connections fails in one sentence at once, not after MLflow's
    minutes of retries. Stores on disk, and servers that answer at all (even 401), pass."""
    if not tracking_uri.startswith(("http://", "https://")):
        return

    try:
        requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as exc:
        raise CxrError(
            f"The MLflow tracking server at {tracking_uri} cannot be reached ({exc.__class__.__name__}); "
            "start it (make ui / mlflow/server.sh) or set MLFLOW_TRACKING_URI."
        ) from exc


def configure(tracking_uri: str, experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns the experiment id."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    require_reachable(tracking_uri)
    if tracking_uri.startswith("sqlite:"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
                mlflow.MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
            return found.experiment_id
        location = None
        if tracking_uri.startswith("sqlite:"):
            # artifacts beside the database, not in whatever folder the process started in
            location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
        return mlflow.create_experiment(experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING})
    except Exception as exc:
        raise CxrError(
            refusal(exc)
            or f"The MLflow tracking server at {tracking_uri} cannot be reached ({exc.__class__.__name__}); "
            "start it (make ui / mlflow/server.sh) or set MLFLOW_TRACKING_URI."
        ) from exc


def data_version(dvc_file: Path | None = None) -> str:
    """The md5 that data.dvc records for the dataset ('unversioned' without one)."""
    dvc_file = dvc_file or project_root() / "data.dvc"
    if not dvc_file.is_file():
        return "unversioned"
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
    return str(outs[0].get("md5", "unversioned")) if outs else "unversioned"


def git_commit(root: Path | None = None) -> str:
    root = root or project_root()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def start_pipeline_run(params: Params, tracking_uri: str, run_name: str, tags: dict) -> str:
    """Create the parent run of one pipeline run, with flattened params and the comparison tags."""
    experiment_id = configure(tracking_uri, params.mlflow.experiment)
    client = mlflow.MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=run_name or None,
        tags={
            record.PROFILE: params.profile,
            **{k: str(v) for k, v in tags.items()},
            record.PARAMS_HASH: params_hash(params),
        },
    )
    run_id = run.info.run_id
    flat = {k: str(v)[:6000] for k, v in params.flat().items()}
    items = list(flat.items())
    for start in range(0, len(items), 100):
        mlflow_params = [mlflow.entities.Param(k, v) for k, v in items[start : start + 100]]
        client.log_batch(run_id, params=mlflow_params)
    return run_id


@contextlib.contextmanager
def step_run(tracking_uri: str, parent_run_id: str, step: str):
    """A child run for one step, nested under the pipeline's parent run. Yields the active run.

    A failing step marks its child run FAILED and the parent too, with the error as a tag.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        parent = client.get_run(parent_run_id)
    except Exception as exc:
        raise store_error(tracking_uri, step, exc) from exc
    try:
        with mlflow.start_run(
            run_name=step, experiment_id=parent.info.experiment_id, parent_run_id=parent_run_id, tags={"step": step}
        ) as run:
            yield run
    except BaseException as exc:
        error = exc if isinstance(exc, CxrError) or not _is_store_failure(exc) else store_error(tracking_uri, step, exc)
        with contextlib.suppress(Exception):
            record.set_failure(client, parent_run_id, step, str(error)[:4000])
            client.set_terminated(parent_run_id, status="FAILED")
        if error is exc:
            raise
        raise error from exc


def _is_store_failure(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MlflowException | ConnectionError | OSError) and (
        "API request to" in text
        or "Connection" in text
        or "S3" in text
        or "bucket" in text.lower()
        or "artifact" in text.lower()
    )


def store_error(tracking_uri: str, step: str, exc: BaseException) -> CxrError:
    """One sentence for a tracking server or artifact store failing under a step."""
    first, text = first_line(exc, 240) or exc.__class__.__name__, str(exc)
    artifacts = "mlflow-artifacts" in text or "S3" in text or "ucket" in text
    if not artifacts and "500 error" in text:
        return CxrError(
            f"The MLflow tracking server at {tracking_uri} answered step '{step}' with server errors (HTTP 500) "
            f"({first}); the server's log says why. Fix that, then rerun the pipeline."
        )
    if not artifacts and ("API request to" in text or "Connection" in text):
        return CxrError(
            f"The MLflow tracking server at {tracking_uri} stopped answering during step '{step}' "
            f"({first}); nothing was registered by this step. Restart the server and rerun the pipeline."
        )
    return CxrError(
        f"The artifact store behind the MLflow server at {tracking_uri} refused a write during step "
        f"'{step}' ({first}); check the bucket and the server's S3 credentials, then rerun."
    )


def close_pipeline_run(tracking_uri: str, experiment: str, kfp_run_id: str, state: str, error: str = "") -> str:
    """The pipeline's exit handler: a parent run still RUNNING when the pipeline ended (a step evicted,
    OOM-killed or failing before it could say so) is marked FAILED, or FINISHED if the pipeline succeeded.
    Returns the status set, or '' when there was nothing to close."""
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None or not kfp_run_id:
        return ""
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.kfp_run_id = '{kfp_run_id}' and attributes.status = 'RUNNING'"
    )
    status = "FINISHED" if state.upper() == "SUCCEEDED" else "FAILED"
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    for run in parents:
        if status == "FAILED" and not RunRecord.from_run(run).error:
            record.set_failure(client, run.info.run_id, "", (error or f"the pipeline ended in state {state}")[:4000])
        client.set_terminated(run.info.run_id, status=status)
    return status if parents else ""


def run_status(tracking_uri: str, run_id: str) -> str:
    return mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.status


GATE_METRICS = ("champion_val_f1", "delta_f1_ci_low")  # logged on the parent run by the gate step


def continue_pipeline_run(params: Params, tracking_uri: str, previous_run_id: str) -> str:
    """A new parent run for stages rerun after `previous_run_id` was closed: today's params, the previous
    run's data tags and metrics (from the stages that did not rerun) and `continued_from`."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    previous = client.get_run(previous_run_id)
    tags = {k: v for k, v in previous.data.tags.items() if not k.startswith(record.OWN_OUTCOME) and k != record.PROFILE}
    run_id = start_pipeline_run(params, tracking_uri, "", {**tags, "continued_from": previous_run_id})
    now = int(time.time() * 1000)
    carried = [mlflow.entities.Metric(k, v, now, 0) for k, v in previous.data.metrics.items() if k not in GATE_METRICS]
    for start in range(0, len(carried), 500):
        client.log_batch(run_id, metrics=carried[start : start + 500])
    return run_id


def finish_pipeline_run(tracking_uri: str, parent_run_id: str, status: str = "FINISHED") -> None:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.MlflowClient().set_terminated(parent_run_id, status=status)


def runs_by_kfp_id(tracking_uri: str, experiment: str, kfp_run_ids: list[str]) -> dict[str, mlflow.entities.Run]:
    """The pipeline parent runs tagged with these Kubeflow run ids, by id (absent: none recorded yet)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or not kfp_run_ids:
        return {}
    out = {}
    for kfp_run_id in kfp_run_ids:  # MLflow's search has no IN for tags: one query per run
        runs = client.search_runs([found.experiment_id], filter_string=f"tags.kfp_run_id = '{kfp_run_id}'")
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        if parents:
            out[kfp_run_id] = parents[0]
    return out
