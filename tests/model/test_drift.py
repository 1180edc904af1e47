"""Drift detection on the real CPU-profile network: a batch of children's chest X-rays is drift, held-out
adults from the test split are not, from files and from what the web app served (records and HTTP).

The children are the 100 bundled with the scope check (cxr/safety/scope_reference): the drift reference
is fitted on the training adults alone and has never seen them.
"""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests

from cxr.data.manifest import read_manifest, split_frame
from cxr.inference.classifier import load_pyfunc
from cxr.safety.drift import DRIFT_FILE, DriftReference
from cxr.safety.population import reference_images
from cxr.serving.records import PredictionRecords

pytestmark = pytest.mark.slow
CXR = str(Path(sys.executable).parent / "cxr")
NAME = "covid-xray-vgg16"


def drift(tmp: Path, uri: str, *args) -> tuple[int, dict | str]:
    out = subprocess.run(
        [CXR, "monitor", "drift", "--tracking-uri", uri, "--json", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
    )
    try:
        return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return out.returncode, out.stderr


def test_the_drift_reference_ships_with_the_model(trained, logged):
    reference = DriftReference.load(trained["dir"] / DRIFT_FILE)
    assert reference.reference.shape == (240, 16) and reference.meta["n_train"] == 240
    mlflow.set_tracking_uri(logged["uri"])
    assert load_pyfunc(logged["model"]).drift is not None  # logged with the model, loaded with it


def test_childrens_xrays_are_drift_and_held_out_adults_are_not(trained, logged, tmp_path):
    children = reference_images()
    code, verdict = drift(tmp_path, logged["uri"], "--model", logged["model"], "--report", "children.html", *children)
    assert code == 4 and verdict["drift"] is True and verdict["n"] == 100, verdict
    assert verdict["p_value"] < 0.01 and "DRIFT" in (tmp_path / "children.html").read_text()

    test = split_frame(read_manifest(trained["dataset"]), "test")
    adults = [trained["dataset"] / f for f in test["file"]]
    code, verdict = drift(tmp_path, logged["uri"], "--model", logged["model"], "--report", "adults.html", *adults)
    assert code == 0 and verdict["drift"] is False and verdict["n"] == len(adults) == 80, verdict

    run_id = logged["model"].split("/")[1]
    logged_reports = mlflow.MlflowClient(logged["uri"]).list_artifacts(run_id, "monitoring/drift")
    assert len(logged_reports) == 2  # one folder per check, under the run that trained the model

    code, message = drift(tmp_path, logged["uri"], "--model", logged["model"], *adults[:5])
    assert code == 2 and "Only 5 images to test" in message


def test_what_the_web_app_served_is_tested_from_its_records_and_over_http(logged, tmp_path):
    from tests.integration.conftest import start_server

    mlflow.set_tracking_uri(logged["uri"])
    mlflow.set_registry_uri(logged["uri"])  # another test in this process may have pointed the registry elsewhere
    version = mlflow.register_model(logged["model"], NAME).version
    records = f"sqlite:///{tmp_path / 'records.db'}"
    args = ("--model", f"models:/{NAME}/{version}", "--records-url", records, "--tracking-uri", logged["uri"])
    args += ("--site", "Ward 5")
    proc, base = start_server(tmp_path, logged["uri"], *args)
    try:
        for child in reference_images()[:40]:
            answer = requests.post(f"{base}/api/predict", files={"file": ("x.png", child.read_bytes())}, timeout=120)
            assert answer.status_code in (200, 422)  # refused or not, its numbers are kept
        served = requests.get(f"{base}/api/records", params={"since": "1h"}, timeout=30).json()["rows"]
        assert len(served) == 40 and len(served[0]["projection"]) == 16 and "file" not in served[0]
        assert {row["site"] for row in served} == {"Ward 5"}
        code, verdict = drift(tmp_path, logged["uri"], "--server", base, "--since", "1h")
        assert code == 4 and verdict["n"] == 40 and verdict["model_version"] == str(version), verdict
    finally:
        proc.terminate()
        proc.wait(timeout=90)
    code, verdict = drift(tmp_path, logged["uri"], "--records", "--records-url", records)
    assert code == 4 and verdict["drift"] is True and verdict["n"] == 40, verdict

    code, verdict = drift(tmp_path, logged["uri"], "--records", "--records-url", records, "--each-site")
    assert code == 4 and verdict["site"] == "Ward 5" and verdict["drift"] is True, verdict  # kept for the site:
    (check,) = PredictionRecords(records).site_checks()
    assert (check["site"], check["model_version"], check["drift"]) == ("Ward 5", str(version), True)
    assert not PredictionRecords(records).site_validated("Ward 5", str(version))  # the page keeps its warning
