"""The pipeline as a Kubeflow Pipelines catalogue entry: versions of a named pipeline, a recurring run of
one of them, and the recent runs with their MLflow links. Every call goes through kfp.Client (a client
from `pipelines.remote.connect`); every refusal becomes one sentence."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cxr.errors import CxrError, first_line
from pipelines.remote import state_name


@dataclass(frozen=True)
class Uploaded:
    pipeline_id: str
    version_id: str
    version_name: str
    created_pipeline: bool


def _eq(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _refused(host: str, what: str, exc: Exception) -> CxrError:
    text = first_line(exc)
    if "already exist" in text.lower() or "(409)" in text:
        return CxrError(f"{what} at {host} failed: it already exists ({text}).")
    return CxrError(f"{what} at {host} failed ({exc.__class__.__name__}: {text}); check --host and your credentials.")


def upload(client, host: str, package: Path, name: str, version: str, description: str) -> Uploaded:
    """Upload `package` as version `version` of pipeline `name`, creating the pipeline on first use."""
    try:
        pipeline_id = client.get_pipeline_id(name)
    except Exception as exc:
        raise _refused(host, f"Looking up pipeline '{name}'", exc) from exc
    if _version_id(client, pipeline_id, version) if pipeline_id else None:
        raise CxrError(
            f"Pipeline '{name}' at {host} already has a version named '{version}'; pass --version with a new name."
        )
    created = pipeline_id is None
    if created:  # the pipeline's own first version carries its name; the named version follows it
        try:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name=name, description=description).pipeline_id
        except Exception as exc:
            raise _refused(host, f"Creating pipeline '{name}'", exc) from exc
    try:
        made = client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id, description=description
        )
    except Exception as exc:
        raise _refused(host, f"Uploading version '{version}' of pipeline '{name}'", exc) from exc
    return Uploaded(pipeline_id, made.pipeline_version_id, version, created)


def _version_id(client, pipeline_id: str, version: str) -> str | None:
    found = client.list_pipeline_versions(pipeline_id, page_size=1, filter=_eq("display_name", version))
    versions = found.pipeline_versions or []
    return versions[0].pipeline_version_id if versions else None


def _latest_version(client, pipeline_id: str) -> tuple[str, str]:
    found = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
    newest = (found.pipeline_versions or [None])[0]
    if newest is None:
        raise CxrError("The pipeline has no version yet; run `cxr pipeline upload` first.")
    return newest.pipeline_version_id, newest.display_name


def cron_fields(expression: str) -> str:
    """A cron expression in Kubeflow's six fields (seconds first); five-field cron gets second 0."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(re.fullmatch(r"[0-9*/,?LW#A-Za-z-]+", f) for f in fields):
        raise CxrError(
            f"Cron expression '{expression}' is not valid; give 5 fields (minute hour day month weekday), "
            "e.g. '0 3 * * 1' for Mondays at 03:00."
        )
    return " ".join(fields)


def schedule(
    client, host: str, name: str, version: str, cron: str, experiment: str, job_name: str, arguments: dict
) -> dict:
    """Create recurring run `job_name` of pipeline `name` (its version `version`, else the newest) on
    `cron` in `experiment`, replacing a recurring run of that name."""
    cron = cron_fields(cron)
    try:
        pipeline_id = client.get_pipeline_id(name)
    except Exception as exc:
        raise _refused(host, f"Looking up pipeline '{name}'", exc) from exc
    if pipeline_id is None:
        raise CxrError(f"Kubeflow Pipelines at {host} has no pipeline '{name}'; run `cxr pipeline upload` first.")
    if version:
        version_id = _version_id(client, pipeline_id, version)
        if version_id is None:
            raise CxrError(f"Pipeline '{name}' at {host} has no version '{version}'; see `cxr pipeline upload`.")
    else:
        version_id, version = _latest_version(client, pipeline_id)
    try:
        experiment_id = client.create_experiment(experiment).experiment_id
        old = client.list_recurring_runs(experiment_id=experiment_id, filter=_eq("display_name", job_name))
        replaced = [r.recurring_run_id for r in old.recurring_runs or []]
        for recurring_run_id in replaced:
            client.delete_recurring_run(recurring_run_id)
        made = client.create_recurring_run(
            experiment_id,
            job_name,
            description=f"{name} {version} on '{cron}'",
            cron_expression=cron,
            params=arguments,
            pipeline_id=pipeline_id,
            version_id=version_id,
            max_concurrency=1,
            no_catchup=True,
        )
    except Exception as exc:
        raise _refused(host, f"Scheduling '{job_name}'", exc) from exc
    return {
        "recurring_run_id": made.recurring_run_id,
        "name": job_name,
        "pipeline": name,
        "version": version,
        "cron": cron,
        "experiment": experiment,
        "replaced": replaced,
    }


def recent_runs(client, host: str, experiment: str, limit: int) -> list[dict]:
    """The newest `limit` runs of `experiment`: id, name, state, created time."""
    try:
        found = client.get_experiment(experiment_name=experiment)
    except Exception as exc:
        raise CxrError(f"Kubeflow Pipelines at {host} has no experiment '{experiment}' ({first_line(exc)}).") from exc
    try:
        listed = client.list_runs(experiment_id=found.experiment_id, page_size=limit, sort_by="created_at desc")
    except Exception as exc:
        raise _refused(host, "Listing runs", exc) from exc
    return [
        {
            "kfp_run_id": run.run_id,
            "name": run.display_name,
            "state": state_name(run.state),
            "created_at": str(run.created_at or ""),
            "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}",
        }
        for run in listed.runs or []
    ]
