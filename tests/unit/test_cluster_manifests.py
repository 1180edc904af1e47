"""`make cluster-manifests` renders a closed set: every Secret, ConfigMap, claim and key a manifest uses is
in the render, every VAR_FILE a container reads names a key of a mounted Secret, every image is one the
project builds or a third-party image pinned to a release; values left empty get random ones that the next
render keeps."""

import base64
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.conftest import PROJECT

SCRIPT = PROJECT / "infra" / "k8s" / "cluster_manifests.py"
BUILT = re.compile(r"^ghcr\.io/cxr/(cxr-python-components|cxr-webapp|cxr-mlflow):[\w.-]+$")
THIRD_PARTY = re.compile(
    r"^(postgres:\d+\.\d+|minio/(minio|mc):RELEASE\.[\dT-]+Z|quay\.io/oauth2-proxy/oauth2-proxy:v\d+\.\d+\.\d+)$"
)


def render(tmp: Path, values: str = "", overlay: str = "gpu", namespace: str = "cxr") -> dict:
    """The objects of one overlay's render in `namespace` (and the cluster-wide ones), by kind and name."""
    (tmp / "values.env").write_text(values)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--values", str(tmp / "values.env"), "--out", str(tmp / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all((tmp / "out" / f"{overlay}.yaml").read_text()) if d]
    here = [d for d in docs if d["metadata"].get("namespace", namespace) == namespace]
    return {(d["kind"], d["metadata"]["name"]): d for d in here}


def pod_specs(objects: dict):
    for (kind, name), doc in objects.items():
        if kind in ("Deployment", "StatefulSet", "Job"):
            yield name, doc["spec"]["template"]["spec"], doc
        elif kind == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"], doc


def mounted_file(spec: dict, container: dict, path: str, objects: dict) -> tuple[str, str] | None:
    """(Secret, key) that the file at `path` in `container` comes from, or None."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        folder = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).parent != folder:
            continue
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            return None
        name, file = secret["secretName"], PurePosixPath(path).name
        keys = objects[("Secret", name)]["data"]
        items = {i["path"]: i["key"] for i in secret.get("items", [])} or {k: k for k in keys}
        return (name, items[file]) if file in items else None
    return None


@pytest.mark.system
@pytest.mark.parametrize("overlay", ["gpu", "cpu-only"])
def test_the_render_is_closed_over_what_its_pods_use(tmp_path, overlay):
    objects = render(tmp_path, overlay=overlay)
    claims = {name for kind, name in objects if kind == "PersistentVolumeClaim"}
    for name, spec, doc in pod_specs(objects):
        claims_here = claims | {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        account = spec.get("serviceAccountName", "default")
        assert account == "default" or ("ServiceAccount", account) in objects, name
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                secret = objects.get(("Secret", volume["secret"]["secretName"]))
                assert secret is not None, f"{name} mounts Secret {volume['secret']['secretName']}, not in the render"
                assert {i["key"] for i in volume["secret"].get("items", [])} <= set(secret["data"]), name
            if "configMap" in volume:
                config = objects.get(("ConfigMap", volume["configMap"]["name"]))
                assert config is not None, f"{name} mounts ConfigMap {volume['configMap']['name']}"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims_here, name
        for container in spec["containers"] + spec.get("initContainers", []):
            image = container["image"]
            assert BUILT.match(image) or THIRD_PARTY.match(image), f"{name}: {image} is neither built nor pinned"
            for env in container.get("env", []):
                if env["name"].endswith("_FILE"):
                    assert mounted_file(spec, container, env["value"], objects), f"{name}: {env['name']} has no source"
                for kind, field, data in (("Secret", "secretKeyRef", "data"), ("ConfigMap", "configMapKeyRef", "data")):
                    ref = env.get("valueFrom", {}).get(field)
                    if ref:
                        assert ref["key"] in objects[(kind, ref["name"])][data], f"{name}: {env['name']}"
    for (kind, name), doc in objects.items():
        if kind == "Ingress":
            assert all(("Secret", tls["secretName"]) in objects for tls in doc["spec"]["tls"]), name
            for rule in doc["spec"]["rules"]:
                assert rule["host"] == "cxr.example.org"  # the operator's CXR_HOST (here the default)
                for path in rule["http"]["paths"]:
                    assert ("Service", path["backend"]["service"]["name"]) in objects, name


@pytest.mark.system
def test_empty_values_are_random_kept_across_renders_and_the_urls_follow_them(tmp_path):
    first = render(tmp_path, "POSTGRES_USER=team\n# a comment\nRECORDS_PASSWORD=p@ss/word\n")

    def value(objects, secret, key):
        return base64.b64decode(objects[("Secret", secret)]["data"][key]).decode()

    token = value(first, "cxr-metrics", "token")
    assert len(token) >= 32 and token != value(first, "cxr-webhook", "secret")
    assert value(first, "cxr-postgres", "username") == "team"
    assert value(first, "cxr-records", "url").startswith(
        "postgresql+psycopg2://cxr_records:p%40ss%2Fword@postgres:5432/"
    )
    again = render(tmp_path, "POSTGRES_USER=team\nRECORDS_PASSWORD=p@ss/word\n")
    assert value(again, "cxr-metrics", "token") == token  # the next render keeps what the cluster already holds
    assert (tmp_path / "out" / "secrets.env").stat().st_mode & 0o077 == 0  # the operator's eyes only
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/k8s/secrets.env"], cwd=PROJECT)
    assert ignored.returncode == 0  # the operator's values file is never committed


def test_an_unknown_value_name_stops_the_render_with_the_line(tmp_path):
    (tmp_path / "values.env").write_text("POSTGRES_PASWORD=x\n")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--values", str(tmp_path / "values.env"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "values.env:1: 'POSTGRES_PASWORD' is not one of the values" in out.stderr


@pytest.mark.system
def test_prometheus_operator_objects_scrape_the_web_app_and_carry_every_alert(tmp_path):
    objects = render(tmp_path)
    monitor, rule = yaml.safe_load_all((tmp_path / "out" / "monitoring.yaml").read_text())
    service = objects[("Service", "webapp")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    token = endpoint["bearerTokenSecret"]
    assert token["key"] in objects[("Secret", token["name"])]["data"]  # the token the app checks
    alerts = yaml.safe_load((PROJECT / "infra" / "monitoring" / "alerts.yml").read_text())
    assert rule["kind"] == "PrometheusRule" and rule["spec"] == alerts  # one source for both ways of running Prometheus


@pytest.mark.system
def test_every_mounted_secret_and_config_file_is_readable_by_the_pods_user(tmp_path):
    """kubelet writes a Secret or ConfigMap volume's files owned by root with `defaultMode` (0644 unless set);
    only the pod's `fsGroup` makes them group-owned and group-readable. A pod running as uid 10001 with a
    0400 file and no fsGroup cannot read its own credentials (the rehearsal showed it: records-db-setup)."""
    for name, spec, _ in pod_specs(render(tmp_path)):
        context = spec.get("securityContext", {})
        if not context.get("runAsUser"):
            continue
        for volume in spec.get("volumes", []):
            source = volume.get("secret") or volume.get("configMap")
            if source is None:
                continue
            modes = [source.get("defaultMode", 0o644)] + [i["mode"] for i in source.get("items", []) if "mode" in i]
            unreadable = [oct(m) for m in modes if not m & 0o004 and context.get("fsGroup") is None]
            assert not unreadable, f"{name}: volume {volume['name']} mode {unreadable} needs the pod's fsGroup"


@pytest.mark.system
def test_the_pipelines_namespace_gets_its_secrets_and_a_gpu_quota_for_its_kind_of_cluster(tmp_path):
    """The pipeline's tasks read cluster.mlflow_secret and cluster.dvc_secret in the Kubeflow profile's
    namespace: both are in each render, with the values of the services' copies. The GPU cluster's quota is
    PIPELINE_GPUS; the CPU-only cluster's is 0, so a package compiled with an accelerator is refused at once."""
    from cxr.params import Params

    cluster = Params().cluster
    values = "PIPELINE_NAMESPACE=radiology-ml\nPIPELINE_GPUS=2\n"
    services = render(tmp_path, values)
    for overlay, gpus in (("gpu", "2"), ("cpu-only", "0")):
        pipeline = render(tmp_path, values, overlay, namespace="radiology-ml")
        assert {name for kind, name in pipeline if kind == "Secret"} == {cluster.mlflow_secret, cluster.dvc_secret}
        for name in (cluster.mlflow_secret, cluster.dvc_secret):
            assert pipeline[("Secret", name)]["data"] == services[("Secret", name)]["data"]
        quota = pipeline[("ResourceQuota", "cxr-pipeline-accelerators")]
        assert quota["spec"]["hard"] == {f"requests.{cluster.accelerator}": gpus}
    (tmp_path / "values.env").write_text("PIPELINE_GPUS=one\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "--values", str(tmp_path / "values.env"), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0 and "PIPELINE_GPUS is 'one'; give a whole number" in out.stderr
