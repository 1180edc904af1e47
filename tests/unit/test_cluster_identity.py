"""Services sign in to MLflow with their own identity from a secret: every task of the compiled pipeline
(kfp.kubernetes.use_secret_as_env, the secret's name a compile option), the web app's pods (the secret
mounted as files, read through VAR_FILE). The package and the manifests name secrets, never values."""

import pytest
import yaml

from cxr.errors import CxrError
from cxr.params import load_params
from cxr.tracking.credentials import credentials_from_files
from pipelines.compile import compile_pipeline
from tests.conftest import PROJECT


def compiled(tmp_path, *overrides):
    path = compile_pipeline(tmp_path / "pipeline.yaml", load_params(overrides=list(overrides)))
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def mlflow_secrets(executor: dict) -> list[dict]:
    return [
        s
        for s in executor.get("secretAsEnv", [])
        if {k["envVar"] for k in s["keyToEnv"]} & {"MLFLOW_TRACKING_USERNAME"}
    ]


def test_every_task_signs_in_with_the_ci_secret(tmp_path):
    pipeline, executors = compiled(tmp_path)
    assert set(executors) == set(pipeline["deploymentSpec"]["executors"])  # every task, the exit handler too
    for name, executor in executors.items():
        (secret,) = mlflow_secrets(executor)
        assert secret["secretName"] == "cxr-mlflow-ci", name
        assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
            ("username", "MLFLOW_TRACKING_USERNAME"),
            ("password", "MLFLOW_TRACKING_PASSWORD"),
        }


def test_the_secrets_name_is_a_compile_option_and_empty_turns_it_off(tmp_path):
    _, executors = compiled(tmp_path, "cluster.mlflow_secret=team-ci")
    assert {mlflow_secrets(e)[0]["secretName"] for e in executors.values()} == {"team-ci"}
    _, executors = compiled(tmp_path, "cluster.mlflow_secret=")
    assert all(not mlflow_secrets(e) for e in executors.values())


def test_credentials_are_read_from_the_files_a_secret_volume_mounts(tmp_path):
    (tmp_path / "username").write_text("webapp\n")
    (tmp_path / "password").write_text("s3cret\n")
    env = {
        "MLFLOW_TRACKING_USERNAME_FILE": str(tmp_path / "username"),
        "MLFLOW_TRACKING_PASSWORD_FILE": str(tmp_path / "password"),
    }
    assert credentials_from_files(env) == ["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "webapp" and env["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    # the mounted secret wins over a value the image set (the web app image's SQLite records URL): replicas
    # given the shared PostgreSQL through CXR_RECORDS_URL_FILE must use it
    (tmp_path / "url").write_text("postgresql+psycopg2://records@postgres:5432/cxr_records\n")
    image = {"CXR_RECORDS_URL": "sqlite:////tmp/cxr-records/records.db", "CXR_RECORDS_URL_FILE": str(tmp_path / "url")}
    assert credentials_from_files(image) == ["CXR_RECORDS_URL"]
    assert image["CXR_RECORDS_URL"] == "postgresql+psycopg2://records@postgres:5432/cxr_records"
    with pytest.raises(CxrError, match="missing.*mount the secret"):
        credentials_from_files({"MLFLOW_TRACKING_PASSWORD_FILE": str(tmp_path / "missing")})


def test_the_web_app_signs_in_as_webapp_from_files():
    (deployment,) = [
        d for d in yaml.safe_load_all((PROJECT / "infra/k8s/webapp.yaml").read_text()) if d["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_TRACKING_PASSWORD_FILE"] == "/run/secrets/cxr-mlflow-webapp/password"
    assert "MLFLOW_TRACKING_PASSWORD" not in env and all("valueFrom" not in e for e in container["env"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["mlflow-identity"]["secret"]["secretName"] == "cxr-mlflow-webapp"
