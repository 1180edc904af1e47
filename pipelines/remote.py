"""Submit the compiled pipeline to a Kubeflow Pipelines endpoint and wait for it, printing state changes.

Credentials come from the environment, never the command line: `KFP_TOKEN` (a bearer token, e.g. an
OIDC id token or a service-account token), else `KF_PIPELINES_SA_TOKEN_PATH` (a projected service-account
token file, kfp's own variable), else whatever kfp.Client finds itself (its saved context, kube config).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import kfp
import requests

from cxr.errors import CxrError, first_line

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
TOKEN_ENV = "KFP_TOKEN"


@dataclass
class KfpRunEnd:
    """How a Kubeflow run ended as this command saw it; state TIMEOUT when it stopped waiting first."""

    run_id: str
    state: str
    error: str = ""
    seconds: float = 0.0
    tasks: dict[str, str] = field(default_factory=dict)


def probe(host: str, token: str | None) -> None:
    """One healthz call first, so an unreachable endpoint or refused credentials fail in a sentence at once
    (kfp.Client retries healthz five times, 5 s apart, logging a traceback each time)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.get(f"{host.rstrip('/')}/apis/v2beta1/healthz", headers=headers, timeout=15)
    except requests.RequestException as exc:
        raise CxrError(
            f"Kubeflow Pipelines at {host} cannot be reached ({exc.__class__.__name__}); check --host / $KFP_HOST."
        ) from exc
    if answer.status_code in (401, 403):
        given = "refused the token in $" + TOKEN_ENV if token else "asks for credentials: set $" + TOKEN_ENV
        raise CxrError(f"Kubeflow Pipelines at {host} {given} (HTTP {answer.status_code}).")


def connect(host: str, namespace: str | None = None):
    """A kfp.Client for `host` with the environment's credentials."""
    token = os.environ.get(TOKEN_ENV) or None
    credentials = None
    sa_token_path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH")
    if token is None and sa_token_path:
        from kfp.client import ServiceAccountTokenVolumeCredentials

        credentials = ServiceAccountTokenVolumeCredentials(path=sa_token_path)
    probe(host, token or (Path(sa_token_path).read_text().strip() if sa_token_path else None))
    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": said on every call
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(host=host, namespace=namespace, existing_token=token, credentials=credentials)
    except Exception as exc:  # kfp surfaces connection, auth and API errors as many types
        raise CxrError(
            f"Connecting to Kubeflow Pipelines at {host} failed ({exc.__class__.__name__}: {first_line(exc)}); "
            f"check --host and the credentials in ${TOKEN_ENV}."
        ) from exc


def submit(client, host: str, package: Path, experiment: str, run_name: str, arguments: dict) -> str:
    """Submit the package as run `run_name` in `experiment`; returns the KFP run id."""
    try:
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments={"run_name": run_name, "kfp_host": host, **arguments},
            run_name=run_name,
            experiment_name=experiment,
            enable_caching=None,  # the package's own settings: ingest and validation cached, the rest not
        )
    except Exception as exc:
        raise CxrError(
            f"Submitting to Kubeflow Pipelines at {host} failed ({exc.__class__.__name__}: {first_line(exc)}); "
            "check --host and your credentials."
        ) from exc
    return run.run_id


def state_name(value) -> str:
    """kfp_server_api returns enum-ish strings ('SUCCEEDED') or objects; normalise to the bare name."""
    return str(getattr(value, "value", value) or "PENDING").split(".")[-1].upper()


def _tasks(run) -> dict[str, str]:
    details = getattr(run, "run_details", None)
    out = {}
    for task in getattr(details, "task_details", None) or []:
        name = getattr(task, "display_name", "") or ""
        if name and not name.startswith(("root", "exit-handler", "condition")):
            out[name] = state_name(getattr(task, "state", ""))
    return out


def wait(
    client,
    run_id: str,
    timeout_s: float,
    on_change: Callable[[str], None],
    poll_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> KfpRunEnd:
    """Poll the run until it ends or `timeout_s` passes, reporting each change of the run's or a task's state."""
    started = clock()
    seen_state, seen_tasks = "", {}
    failures = 0
    while True:
        elapsed = clock() - started
        try:
            run = client.get_run(run_id)
            failures = 0
        except Exception as exc:
            failures += 1
            if failures >= 5:
                raise CxrError(
                    f"Kubeflow Pipelines stopped answering about run {run_id} ({exc.__class__.__name__}: "
                    f"{first_line(exc)}); the run may still be going: check the KFP UI."
                ) from exc
            sleep(poll_s)
            continue
        state, tasks = state_name(run.state), _tasks(run)
        if state != seen_state:
            on_change(f"kfp run {run_id}: {state} ({elapsed:.0f} s)")
            seen_state = state
        for name, task_state in tasks.items():
            if seen_tasks.get(name) != task_state:
                on_change(f"  {name}: {task_state} ({elapsed:.0f} s)")
        seen_tasks = tasks
        if state in TERMINAL_STATES:
            error = getattr(getattr(run, "error", None), "message", "") or ""
            return KfpRunEnd(run_id, state, error, elapsed, tasks)
        if elapsed >= timeout_s:
            return KfpRunEnd(run_id, "TIMEOUT", f"still {state} after {timeout_s:.0f} s", elapsed, tasks)
        sleep(min(poll_s, max(timeout_s - elapsed, 0.1)))
