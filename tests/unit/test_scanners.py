"""The field's scanners, from their PyPI packages (tools/scanners, `make tools`), offline: checkov on the
infrastructure and the workflows, hadolint on the Dockerfiles, kubernetes-validate on the rendered
kustomize output. Each is also shown to catch a planted mistake, so a pass means something."""

import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT

pytestmark = pytest.mark.system  # needs tools beyond the venv (make tools, .ci/run)

SCANNERS = PROJECT / "tools" / "scanners" / ".venv" / "bin"
DOCKERFILES = sorted((PROJECT / "infra" / "docker").glob("*.Dockerfile"))


def tool(name: str) -> str:
    path = SCANNERS / name
    assert path.exists(), f"{path} is missing: run `make tools`"
    return str(path)


def checkov(*targets) -> dict:
    args = [tool("checkov"), "--quiet", "--compact", "--skip-download", "-o", "json"]
    for target in targets:
        args += ["-d" if target.is_dir() else "-f", str(target)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=PROJECT)
    reports, decoder, text = [], json.JSONDecoder(), out.stdout.strip()
    while text:  # one JSON document per scanned directory, back to back
        report, end = decoder.raw_decode(text)
        reports += report if isinstance(report, list) else [report]
        text = text[end:].strip()
    assert reports, out.stderr[-2000:]
    failed = [
        f"{r['check_type']}: {f['check_id']} {f['resource']} ({f['file_path']})"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    return {"failed": failed, "passed": sum(r["summary"]["passed"] for r in reports)}


def test_checkov_finds_nothing_in_the_infrastructure_and_the_workflows():
    result = checkov(PROJECT / "infra", PROJECT / ".github")
    assert result["failed"] == [] and result["passed"] > 300


def test_checkov_catches_a_privileged_pod(tmp_path):
    bad = tmp_path / "pod.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: cxr}\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox:1.36\n      securityContext: {privileged: true}\n"
    )
    assert any("CKV_K8S_16" in f for f in checkov(bad)["failed"])  # privileged container


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_has_nothing_to_say(dockerfile):
    out = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "", out.stdout


def test_hadolint_catches_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    out = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "DL3008" in out.stdout


def rendered(tmp_path, folder="infra/k8s"):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render infra/k8s"
    out = subprocess.run([kubectl, "kustomize", str(PROJECT / folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "rendered.yaml"
    path.write_text(out.stdout)
    return path


def validate(path):
    return subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", str(path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_the_rendered_manifests_validate_against_the_kubernetes_schema(tmp_path):
    path = rendered(tmp_path)
    out = validate(path)
    assert out.returncode == 0, out.stdout + out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1))
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("overlay", ["gpu", "cpu-only"])
def test_the_overlays_for_the_pipelines_namespace_validate_too(tmp_path, overlay):
    path = rendered(tmp_path, f"infra/k8s/overlays/{overlay}")
    assert "ResourceQuota" in path.read_text()
    out = validate(path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_pod_meets_the_restricted_pod_security_standard(tmp_path):
    docs = [d for d in yaml.safe_load_all(rendered(tmp_path).read_text()) if d]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]
    names = {"postgres", "minio", "mlflow", "webapp", "oauth2-proxy", "minio-setup", "records-db-setup", "drift-check"}
    assert {d["metadata"]["name"] for d in workloads} == names
    for doc in workloads:
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        pod = spec["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["readOnlyRootFilesystem"] is True
            assert {"requests", "limits"} <= set(c["resources"])
            assert doc["kind"] in ("Job", "CronJob") or {"startupProbe", "livenessProbe", "readinessProbe"} <= set(c)
            assert not any("valueFrom" in e for e in c.get("env", []))  # secrets only as mounted files
            assert not any(k in " ".join(c.get("args", []) + c.get("command", [])) for k in ("PASSWORD", "SECRET"))
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    postgres_from = [f["podSelector"]["matchLabels"]["app"] for f in policies["postgres"]["spec"]["ingress"][0]["from"]]
    assert postgres_from == ["mlflow", "webapp", "drift-check", "records-db-setup"]  # nothing else reaches it
