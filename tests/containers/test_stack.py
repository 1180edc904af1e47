"""The team stack as `make stack-up` starts it (PostgreSQL, S3, the MLflow server and web app images), used
the way the team uses it: the pipeline in its containers logs to http://mlflow:5000, a release manager
promotes, the running web app container serves the champion without a restart, and a restart of the
whole stack loses nothing."""

import subprocess
import time

import mlflow
import pytest
import requests

from tests.conftest import PROJECT, SAMPLE
from tests.containers.conftest import FAST, cxr

pytestmark = [pytest.mark.container, pytest.mark.slow]
SERVER = "http://mlflow:5000"  # the service name, as pods and containers use it (mapped to 127.0.0.1)
WEBAPP = "http://webapp:8080"
XRAY = SAMPLE / "COVID" / "COVID-1.png"


def stack(env, *args, check=True):
    out = subprocess.run(
        ["bash", "infra/compose/stack.sh", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600
    )
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def team(images, tmp_path_factory):
    import os

    env = {
        **os.environ,
        "CXR_STACK_PROJECT": "cxrtest",
        "CXR_STACK_ENV_FILE": str(tmp_path_factory.mktemp("stack") / ".env"),
        "MLFLOW_TRACKING_URI": SERVER,
    }
    stack(env, "down", "-v", check=False)
    stack(env, "up")
    mlflow.set_tracking_uri(SERVER)
    mlflow.set_registry_uri(SERVER)
    yield env
    stack(env, "down", "-v", check=False)


def served_prediction(timeout=240, alias="@champion") -> dict:
    """The web app container's answer, once it serves the version `alias` names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{WEBAPP}/readyz", timeout=5).status_code == 200:
                with open(XRAY, "rb") as fh:
                    answer = requests.post(f"{WEBAPP}/api/predict", files={"file": fh}, timeout=60)
                assert answer.status_code == 200, answer.text
                if answer.json()["model_uri"].endswith(alias):
                    return answer.json()
        except requests.RequestException:  # refused, or accepted and not answered while the worker loads
            pass
        time.sleep(2)
    raise AssertionError(f"the web app at {WEBAPP} did not become ready in {timeout} s")


def test_the_server_answers_its_service_name_and_refuses_unknown_hosts(team):
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(SERVER + path, timeout=10).status_code == 200
    forged = requests.get("http://127.0.0.1:5000" + path, headers={"Host": "attacker.example"}, timeout=10)
    assert forged.status_code == 403


def test_pipeline_in_containers_logs_to_the_stack_and_registers(team):
    permissive = ["--set", "gate.min_f1=0.0", "--set", "gate.min_val_per_class=1"]
    out = cxr("pipeline", "run", "--runner", "docker", *FAST, *permissive, "--run-name", "stack-1")
    assert "gate: PASSED" in out.stdout and "version 1 as @challenger" in out.stdout
    (run,) = mlflow.search_runs(
        experiment_names=["covid-xray"], filter_string="attributes.run_name = 'stack-1'", output_format="list"
    )
    assert run.info.status == "FINISHED" and "val_f1" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # artifacts go through the server to S3


def test_a_promoted_champion_is_served_by_the_web_app_container(team):
    out = cxr("registry", "promote", "1", "--reason", "stack test", env=team)
    assert "@champion -> v1" in out.stdout
    answer = served_prediction(timeout=120)  # the running container follows the alias: no restart
    assert answer["model_uri"].endswith("@champion") and answer["model_version"] == "1"
    assert 0.0 <= answer["probability"] <= 1.0
    team["first_probability"] = str(answer["probability"])


def test_a_restart_of_the_stack_keeps_runs_versions_and_models(team):
    stack(team, "down")
    stack(team, "up")
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("covid-xray-vgg16", "champion").version == "1"
    assert mlflow.search_runs(experiment_names=["covid-xray"], filter_string="attributes.run_name = 'stack-1'").shape[0]
    answer = served_prediction()  # the model file itself came back from the S3 store's volume
    assert answer["model_version"] == "1"
    assert answer["probability"] == pytest.approx(float(team["first_probability"]), abs=1e-5)
