"""The cluster manifests render with kustomize and agree with the app, the server and the images."""

import re
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


@pytest.mark.system
def test_web_app_probes_its_health_endpoints(rendered):
    app = container(rendered[("Deployment", "webapp")])
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["image"] == "ghcr.io/cxr/cxr-webapp:0.1.0"
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


@pytest.mark.system
def test_mlflow_runs_on_postgres_and_s3_with_secrets_by_reference(rendered):
    server = container(rendered[("Deployment", "mlflow")])
    env = {e["name"]: e for e in server["env"]}
    # secrets as mounted files, read by mlflow/server.sh (VAR_FILE)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in rendered[("Deployment", "mlflow")]["spec"]["template"][
        "spec"]["volumes"] if "secret" in v}  # fmt: skip
    assert secrets == {"postgres": "cxr-postgres", "s3": "cxr-s3-mlflow", "auth": "cxr-mlflow-auth"}  # scoped S3 user
    assert env["MLFLOW_BACKEND_STORE_URI_FILE"]["value"] == f"{mounts['postgres']}/mlflow-uri"
    assert env["AWS_SECRET_ACCESS_KEY_FILE"]["value"] == f"{mounts['s3']}/secret-access-key"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD_FILE"]["value"] == f"{mounts['auth']}/admin-password"
    script = (PROJECT / "mlflow" / "server.sh").read_text()
    assert all(f"{name.removesuffix('_FILE')}" in script for name in env if name.endswith("_FILE"))
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert ("StatefulSet", "postgres") in rendered and ("Deployment", "minio") in rendered
    assert not [key for key in rendered if key[0] == "Secret"]  # secrets are never committed
    for doc in rendered.values():
        assert doc["metadata"].get("namespace", "cxr") == "cxr"


@pytest.mark.system
def test_in_cluster_defaults_match_the_compiled_pipeline(rendered):
    from cxr.params import load_params

    cluster = load_params().cluster
    assert cluster.tracking_uri == "http://mlflow.cxr.svc.cluster.local:5000"
    assert rendered[("Service", "mlflow")]["spec"]["ports"][0]["port"] == 5000


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_images_install_from_the_lock_and_run_as_a_numeric_non_root_user(dockerfile):
    """The kubelet refuses runAsNonRoot with a user name: USER must be numeric (and not 0)."""
    text = dockerfile.read_text()
    assert "pip install" not in text or "requirements.lock" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and all(u.split(":")[0].isdigit() and u.split(":")[0] != "0" for u in users), users
    assert re.search(r"^ARG BASE_IMAGE=", text, flags=re.M)  # buildable from a local base where nothing can be pulled


def allowed(patterns: str, host: str) -> bool:
    """MLflow's own Host-header match (mlflow.server.security_utils)."""
    from mlflow.server.security_utils import is_allowed_host_header

    return is_allowed_host_header([p.strip() for p in patterns.split(",")], host)


@pytest.mark.system
def test_the_mlflow_server_accepts_the_names_its_clients_use_and_nothing_else(rendered):
    from urllib.parse import urlparse

    from cxr.params import load_params

    server = container(rendered[("Deployment", "mlflow")])
    hosts = {e["name"]: e.get("value") for e in server["env"]}["MLFLOW_SERVER_ALLOWED_HOSTS"]
    in_cluster = urlparse(load_params().cluster.tracking_uri).netloc
    for host in (in_cluster, "mlflow:5000", "mlflow.cxr:5000", "localhost:5000"):
        assert allowed(hosts, host), host
    assert not allowed(hosts, "attacker.example:5000")
    script = (PROJECT / "mlflow" / "server.sh").read_text()
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in script and "--backend-store-uri" not in script  # no password in argv


@pytest.mark.system
def test_the_compose_stack_renders_with_service_names_on_loopback(tmp_path):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is needed (infra/ci/docker.sh installs it)"
    keys = ("DB_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD", "WEBAPP_PASSWORD")
    keys += ("WEBHOOK_SECRET", "WEBHOOK_ENCRYPTION_KEY")
    env = {f"CXR_{k}": k.lower() for k in keys} | {"PATH": "/usr/bin:/bin"}
    files = ["-f", str(PROJECT / "infra/compose/compose.yaml"), "-f", str(PROJECT / "infra/compose/compose.local.yaml")]
    out = subprocess.run([compose, *files, "config"], env=env, capture_output=True, text=True, check=True)
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"postgres", "s3", "s3-init", "mlflow", "webapp"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert service["extra_hosts"]["mlflow"] == "127.0.0.1", name
    assert services["webapp"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "@postgres:" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "mlflow_admin_password"  # sign-in on
    assert services["webapp"]["environment"]["MLFLOW_TRACKING_USERNAME"] == "webapp"


def test_the_compiled_pipeline_closes_its_mlflow_run_and_fetches_its_data_version(tmp_path):
    from cxr.data.versions import project_dvc_remote
    from cxr.params import load_params
    from pipelines.compile import compile_pipeline

    params = load_params()
    package, _platform = yaml.safe_load_all(
        compile_pipeline(tmp_path / "p.yaml", params, "abc.dir", "c0ffee").read_text()
    )
    inputs = package["root"]["inputDefinitions"]["parameters"]
    remote = params.cluster.dvc_remote or project_dvc_remote()  # .dvc/config's s3 unless overridden
    assert inputs["dvc_remote"]["defaultValue"] == remote == "s3://cxr-data/dvc-store"
    assert inputs["data_dir"]["defaultValue"] == ""
    assert inputs["data_version"]["defaultValue"] == "abc.dir"
    tasks = package["root"]["dag"]["tasks"]
    assert tasks["finalize"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    secrets = _platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-ingest"]["secretAsEnv"]
    assert secrets[0]["secretName"] == params.cluster.dvc_secret
    assert {k["envVar"] for k in secrets[0]["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    images = {e["container"]["image"] for e in package["deploymentSpec"]["executors"].values()}
    assert images == {"ghcr.io/cxr/cxr-python-components:0.1.0", "ghcr.io/cxr/cxr-python-train-gpu:0.1.0"}


@pytest.mark.system
def test_replicas_share_the_records_and_a_daily_job_checks_them_for_drift(rendered):
    from cxr.tracking.credentials import CREDENTIAL_VARIABLES

    app = container(rendered[("Deployment", "webapp")])
    assert {"name": "CXR_RECORDS_URL_FILE", "value": "/run/secrets/cxr-records/url"} in app["env"]
    assert "CXR_RECORDS_URL" in CREDENTIAL_VARIABLES  # read from the file, never a manifest value
    job = rendered[("CronJob", "drift-check")]["spec"]["jobTemplate"]["spec"]
    drift = job["template"]["spec"]["containers"][0]
    assert drift["command"][:4] == ["cxr", "monitor", "drift", "--records"] and job["backoffLimit"] == 0
    assert drift["image"].startswith("ghcr.io/cxr/cxr-python-components:")
    assert {e["name"] for e in drift["env"]} >= {"CXR_RECORDS_URL_FILE", "MLFLOW_TRACKING_USERNAME_FILE"}
    alerts = (PROJECT / "infra" / "monitoring" / "alerts.yml").read_text()
    assert 'cronjob="drift-check"' in alerts  # the alert follows the CronJob's newest run (promtool-tested)
    postgres_from = rendered[("NetworkPolicy", "postgres")]["spec"]["ingress"][0]["from"]
    allowed = {f["podSelector"]["matchLabels"]["app"] for f in postgres_from}
    assert allowed == {"mlflow", "webapp", "drift-check", "records-db-setup"}


@pytest.mark.system
def test_the_web_app_admits_exactly_the_ingress_controller_mlflow_and_prometheus(rendered):
    (rule,) = rendered[("NetworkPolicy", "webapp")]["spec"]["ingress"]
    sources = [f.get("namespaceSelector", f.get("podSelector"))["matchLabels"] for f in rule["from"]]
    assert sources == [
        {"kubernetes.io/metadata.name": "ingress-nginx"},
        {"app": "mlflow"},  # its signed registry webhooks
        {"cxr.io/monitoring": "true"},  # Prometheus' scrape of /metrics (infra/monitoring/prometheus.yml)
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_every_client_downloads_artifacts_through_the_tracking_server():
    """An MLflow 3 server on S3 hands clients presigned URLs to the store's in-cluster address unless the
    client opts out; importing cxr opts out (what the web app, the steps and the CLI all import)."""
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD', None); import cxr;"
        "from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository as R;"
        "r = R('mlflow-artifacts://127.0.0.1:9/x', tracking_uri='http://127.0.0.1:9');"
        "r._server_capabilities = {'multipart_downloads_enabled': True};"
        "print(r._is_multipart_download_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
