"""Where `cxr monitor drift` gets its two samples: the model's reference from the registry, and the images
to test from files (a new site's batch), from the web app's records store, or from a running web app."""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import requests
from mlflow.exceptions import MlflowException

from cxr.data.images import decode_image
from cxr.errors import CxrError, first_line, not_a_file
from cxr.inference.classifier import load_classifier
from cxr.release.registry import client
from cxr.safety.drift import DRIFT_FILE, DriftReference, DriftVerdict

SERVER_USER, SERVER_PASSWORD = "CXR_SERVER_USER", "CXR_SERVER_PASSWORD"  # the web app's sign-in, never an option


def reference_for(model_uri: str) -> DriftReference:
    """The drift reference a logged model carries (`URI/artifacts/drift.npz`), without its network."""
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri.rstrip('/')}/artifacts/{DRIFT_FILE}")
    except (MlflowException, OSError) as exc:
        raise CxrError(
            f"Model {model_uri} has no drift reference ({first_line(exc)}): it was trained before drift detection "
            "existed, or the URI is wrong; retrain it (cxr retrain) or pass another --model."
        ) from exc
    return DriftReference.load(path)


def run_of(model_uri: str) -> str:
    """The MLflow run that produced a model URI (runs:/ID/..., models:/NAME/N, models:/NAME@ALIAS); '' for a path."""
    if model_uri.startswith("runs:/"):
        return model_uri.removeprefix("runs:/").split("/")[0]
    match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri.rstrip("/"))
    if not match:
        return ""
    name, number, alias = match.groups()
    version = client().get_model_version(name, number) if number else client().get_model_version_by_alias(name, alias)
    return version.run_id or ""


def project_files(model_uri: str, files: list[Path], batch: int = 16) -> tuple[np.ndarray, DriftReference]:
    """The drift projection of each file, decoded as uploads are; a file that cannot be read stops the check
    with its name (a verdict on part of a batch would not say what was tested)."""
    classifier = load_classifier(model_uri)
    if classifier.drift is None:
        raise CxrError(f"Model {model_uri} has no drift reference; retrain it (cxr retrain) or pass another --model.")
    parts = []
    for start in range(0, len(files), batch):
        arrays = []
        for path in files[start : start + batch]:
            if not Path(path).is_file():
                raise CxrError(not_a_file(path))
            arrays.append(decode_image(Path(path).read_bytes(), str(path))[0])
        parts.append(classifier.projections(classifier.features_of(arrays)))
    return np.concatenate(parts), classifier.drift


def choose_rows(rows: list[dict], version: str, max_rows: int) -> tuple[str, np.ndarray]:
    """The newest `max_rows` recorded projections of `version` (default: the version of the newest record)."""
    usable = [r for r in rows if r.get("projection")]
    if not usable:
        raise CxrError(
            "None of the recorded predictions in that window carries a drift projection (no predictions yet, "
            "or a model without a drift reference served them); widen --since or wait for traffic."
        )
    version = version or str(max(usable, key=lambda r: str(r["created_at"]))["model_version"])
    chosen = [r for r in usable if str(r["model_version"]) == version]
    if not chosen:
        raise CxrError(f"No recorded prediction of model version {version} carries a projection; check --version.")
    chosen = sorted(chosen, key=lambda r: str(r["created_at"]))[-max_rows:]
    return version, np.asarray([r["projection"] for r in chosen], np.float64)


def server_rows(url: str, since: str, version: str) -> list[dict]:
    """The records a running web app kept (GET /api/records), signed in as $CXR_SERVER_USER."""
    user, password = os.environ.get(SERVER_USER, ""), os.environ.get(SERVER_PASSWORD, "")
    auth = (user, password) if user else None
    try:
        response = requests.get(
            f"{url.rstrip('/')}/api/records", params={"since": since, "version": version}, auth=auth, timeout=60
        )
    except requests.RequestException as exc:
        raise CxrError(f"The web app at {url} cannot be reached ({exc.__class__.__name__}); check --server.") from exc
    if response.status_code == 401:
        raise CxrError(f"{url} asks you to sign in: set {SERVER_USER} and {SERVER_PASSWORD}.")
    if response.status_code != 200:
        message = response.json().get("error", "") if "json" in response.headers.get("content-type", "") else ""
        raise CxrError(f"{url}/api/records answered {response.status_code} {message}".rstrip() + ".")
    return response.json()["rows"]


def log_report(model_uri: str, verdict: DriftVerdict, report: Path) -> str:
    """The report and the verdict as artifacts of the run that produced the model (under monitoring/drift/);
    returns a warning sentence when that cannot be done (the local report stays)."""
    try:
        run_id = run_of(model_uri)
        if not run_id:
            return ""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / stamp
            folder.mkdir()
            (folder / "drift-report.html").write_bytes(report.read_bytes())
            (folder / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
            client().log_artifacts(run_id, str(folder), f"monitoring/drift/{stamp}")
        return ""
    except Exception as exc:  # noqa: BLE001 (a refusal or an unreachable store must not hide the verdict)
        return f"the report was not logged to MLflow ({first_line(exc)}); it is kept at {report}"
