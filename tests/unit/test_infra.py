"""The cluster manifests render with kustomize and agree with the app, the server and the images."""

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT

K8S = PROJECT / "infra" / "k8s"
DOCKER = PROJECT / "infra" / "docker"


@pytest.fixture(scope="module")
def rendered():
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render infra/k8s"
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


def test_web_app_probes_its_health_endpoints(rendered):
    app = container(rendered[("Deployment", "webapp")])
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["image"] == "ghcr.io/cxr/cxr-webapp:0.1.0"
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_mlflow_runs_on_postgres_and_s3_with_secrets_by_reference(rendered):
    server = container(rendered[("Deployment", "mlflow")])
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "cxr-postgres"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cxr-s3"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert ("StatefulSet", "postgres") in rendered and ("Deployment", "minio") in rendered
    assert not [key for key in rendered if key[0] == "Secret"]  # secrets are never committed
    for doc in rendered.values():
        assert doc["metadata"].get("namespace", "cxr") == "cxr"


def test_in_cluster_defaults_match_the_compiled_pipeline(rendered):
    from cxr.params import load_params

    cluster = load_params().cluster
    assert cluster.tracking_uri == "http://mlflow.cxr.svc.cluster.local:5000"
    assert rendered[("Service", "mlflow")]["spec"]["ports"][0]["port"] == 5000


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_images_install_from_the_lock_and_run_as_non_root(dockerfile):
    text = dockerfile.read_text()
    assert "requirements.lock" in text
    assert "\nUSER " in text and "USER root" not in text
