"""The team stack as `make stack-up` starts it (PostgreSQL, S3, the MLflow server with sign-in, the web app),
used the way the team uses it: the `ci` identity runs the pipeline in its containers as uid 10001 and
registers @challenger; a data scientist cannot move @champion, the release manager does; the running web
app container serves the new champion without a restart; anonymous requests get 401; no process of the
stack runs as root; a restart of the whole stack loses nothing."""

import os
import subprocess
import time

import mlflow
import pytest
import requests

from tests.conftest import PROJECT, SAMPLE
from tests.containers.conftest import CXR, FAST, cxr

pytestmark = [pytest.mark.container, pytest.mark.slow]
SERVER = "http://mlflow:5000"  # the service name, as pods and containers use it (mapped to 127.0.0.1)
WEBAPP = "http://webapp:8080"
XRAY = SAMPLE / "COVID" / "COVID-1.png"
PEOPLE = {"rm": "release-manager", "ds": "data-scientist"}
SIGN_IN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def stack(env, *args, check=True):
    out = subprocess.run(
        ["bash", "infra/compose/stack.sh", *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600
    )
    assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def env_values(path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def team(images, tmp_path_factory):
    env_file = tmp_path_factory.mktemp("stack") / ".env"
    base = {k: v for k, v in os.environ.items() if k not in SIGN_IN}
    env = {**base, "CXR_STACK_PROJECT": "cxrtest", "CXR_STACK_ENV_FILE": str(env_file), "MLFLOW_TRACKING_URI": SERVER}
    stack(env, "down", "-v", check=False)
    stack(env, "up")
    secrets = env_values(env_file)
    passwords = {"admin": secrets["CXR_MLFLOW_ADMIN_PASSWORD"], "ci": secrets["CXR_CI_PASSWORD"]}
    passwords |= {"webapp": secrets["CXR_WEBAPP_PASSWORD"]}
    who = {name: {**env, SIGN_IN[0]: name, SIGN_IN[1]: password} for name, password in passwords.items()}
    for person, role in PEOPLE.items():  # people, added by the admin as the README says
        password = f"{person}-password-{os.urandom(6).hex()}"
        add = [CXR, "team", "add-user", person, "--role", role, "--password-stdin"]
        out = subprocess.run(add, input=password + "\n", env=who["admin"], capture_output=True, text=True, cwd=PROJECT)
        assert out.returncode == 0, out.stderr
        who[person] = {**env, SIGN_IN[0]: person, SIGN_IN[1]: password}
    saved = {k: os.environ.get(k) for k in SIGN_IN}
    os.environ.update({k: who["admin"][k] for k in SIGN_IN})  # this process reads the store as the admin
    mlflow.set_tracking_uri(SERVER)
    mlflow.set_registry_uri(SERVER)
    yield {"env": env, "who": who, "env_file": env_file, "state": {}}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    stack(env, "down", "-v", check=False)


def running(service: str = "") -> list[str]:
    """Ids of the test stack's running containers (of one service)."""
    filters = ["--filter", "label=com.docker.compose.project=cxrtest"]
    filters += ["--filter", f"label=com.docker.compose.service={service}"] if service else []
    return subprocess.run(["docker", "ps", "-q", *filters], capture_output=True, text=True).stdout.split()


def started_at(container: str) -> str:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], capture_output=True, text=True)
    return out.stdout.strip()


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


def test_the_stack_signs_everyone_in_and_runs_nothing_as_root(team):
    assert team["env_file"].stat().st_mode & 0o777 == 0o600  # the admin's and the identities' passwords
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(SERVER + path, timeout=10).status_code == 401  # anonymous, by service name
    admin = (team["who"]["admin"][SIGN_IN[0]], team["who"]["admin"][SIGN_IN[1]])
    assert requests.get(SERVER + path, auth=admin, timeout=10).status_code == 200
    forged = requests.get("http://127.0.0.1:5000" + path, headers={"Host": "attacker.example"}, auth=admin, timeout=10)
    assert forged.status_code == 403
    assert requests.get(f"{WEBAPP}/healthz", timeout=10).status_code == 200
    containers = running()
    assert len(containers) == 4  # postgres, s3, mlflow, webapp (s3-init has done its work and exited)
    for container in containers:
        uids = subprocess.run(["docker", "top", container, "-eo", "uid"], capture_output=True, text=True).stdout
        assert "0" not in uids.split()[1:], (container, uids)


def test_ci_runs_the_pipeline_in_containers_as_uid_10001_and_registers_a_challenger(team, tmp_path):
    root = tmp_path / "outputs"
    root.mkdir()
    root.chmod(0o777)  # written by uid 10001, as a pod writes its volume
    permissive = ["--set", "gate.min_f1=0.0", "--set", "gate.min_val_per_class=1"]
    args = ["pipeline", "run", "--runner", "docker", *FAST, *permissive, "--run-name", "stack-1"]
    env = {**team["who"]["ci"], "CXR_STEP_USER": "10001:10001"}
    out = cxr(*args, "--pipeline-root", str(root), env=env)
    assert "gate: PASSED" in out.stdout and "version 1 as @challenger" in out.stdout
    (run,) = mlflow.search_runs(
        experiment_names=["covid-xray"], filter_string="attributes.run_name = 'stack-1'", output_format="list"
    )
    assert run.info.status == "FINISHED" and "val_f1" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # artifacts go through the server to S3
    version = mlflow.MlflowClient().get_model_version_by_alias("covid-xray-vgg16", "challenger")
    assert version.version == "1" and version.tags["registered_by"] == "ci"
    written = [p for p in root.rglob("*") if p.is_file() and ".kfp_cache" not in p.parts]  # kfp's own: the host's
    assert written and {p.stat().st_uid for p in written} == {10001}  # every step ran as 10001, not as this user


def test_only_the_release_manager_moves_champion_and_the_app_follows_without_restart(team):
    refused = cxr("registry", "promote", "1", "--reason", "not mine to do", env=team["who"]["ds"], check=False)
    assert refused.returncode == 2 and "ds may not move @champion" in refused.stderr, refused.stderr
    (webapp,) = running("webapp")
    started = started_at(webapp)
    out = cxr("registry", "promote", "1", "--reason", "stack test", env=team["who"]["rm"])
    assert "@champion -> v1" in out.stdout
    answer = served_prediction(timeout=120)  # the running container follows the alias: no restart
    assert answer["model_uri"].endswith("@champion") and answer["model_version"] == "1"
    assert 0.0 <= answer["probability"] <= 1.0
    assert running("webapp") == [webapp] and started_at(webapp) == started  # the same container, not restarted
    team["state"]["first_probability"] = str(answer["probability"])


def test_a_restart_of_the_stack_keeps_runs_versions_users_and_models(team):
    stack(team["env"], "down")
    stack(team["env"], "up")
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("covid-xray-vgg16", "champion").version == "1"
    assert mlflow.search_runs(experiment_names=["covid-xray"], filter_string="attributes.run_name = 'stack-1'").shape[0]
    answer = served_prediction()  # the model file itself came back from the S3 store's volume
    assert answer["model_version"] == "1"
    assert answer["probability"] == pytest.approx(float(team["state"]["first_probability"]), abs=1e-5)
    still = cxr("registry", "list", env=team["who"]["rm"])  # the users survived in the sign-in store's volume
    assert "champion" in still.stdout
