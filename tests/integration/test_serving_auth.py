"""Who may use the web app, through real `cxr serve` processes: htpasswd (bcrypt) logins, a trusted header
from an authenticating proxy, and the refusal to listen beyond loopback with neither."""

import subprocess

import bcrypt
import pytest
import requests

from tests.conftest import SAMPLE
from tests.integration.conftest import CXR, start_server

pytestmark = pytest.mark.slow
XRAY = (SAMPLE / "COVID" / "COVID-2.png").read_bytes()


def predict(base, **kwargs):
    return requests.post(f"{base}/api/predict", files={"file": ("x.png", XRAY)}, timeout=60, **kwargs)


def test_htpasswd_users_get_in_and_nobody_else(server, tmp_path):
    users = tmp_path / "htpasswd"
    users.write_text("radiologist:" + bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode() + "\n")
    proc, base = start_server(server["dir"], server["uri"], "--htpasswd", str(users), log_name="auth.log")
    try:
        refused = predict(base)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert "Authentication required" in refused.json()["error"]
        assert predict(base, auth=("radiologist", "wrong")).status_code == 401
        assert predict(base, auth=("someone", "correct horse")).status_code == 401
        assert predict(base, auth=("radiologist", "correct horse")).status_code == 200
        assert requests.get(f"{base}/", timeout=30).status_code == 401
        assert requests.get(f"{base}/healthz", timeout=30).status_code == 200  # the probes stay open
    finally:
        proc.terminate()
        proc.wait(timeout=90)
    assert "correct horse" not in (server["dir"] / "auth.log").read_text()


def test_behind_a_proxy_the_trusted_header_is_required_on_every_address(server):
    args = ("--trusted-user-header", "X-Auth-Request-User")
    proc, base = start_server(server["dir"], server["uri"], *args, host="0.0.0.0", log_name="proxy.log")
    try:
        assert predict(base).status_code == 401
        assert predict(base, headers={"X-Auth-Request-User": "dr.who"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=90)


def run(*args):
    return subprocess.run([CXR, "serve", *args], capture_output=True, text=True, timeout=120)


def test_beyond_loopback_without_authentication_it_refuses_to_start_in_one_sentence(tmp_path):
    out = run("--host", "0.0.0.0")
    assert out.returncode == 2 and "Refusing to listen on 0.0.0.0 without authentication" in out.stderr
    weak = tmp_path / "htpasswd"
    weak.write_text("alice:$apr1$abc$0123456789abcdefghijkl\n")  # MD5: refused
    out = run("--host", "0.0.0.0", "--htpasswd", str(weak))
    assert out.returncode == 2 and f"{weak} line 1 is not 'user:bcrypt-hash'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.system  # Debian's prometheus (.ci/run installs it)
def test_prometheus_scrapes_the_signed_in_app_with_the_token_using_the_projects_scrape_config(
    server, tmp_path, monkeypatch
):
    """Debian's Prometheus, run with infra/monitoring/prometheus.yml as it is but for two substitutions a
    machine without Kubernetes needs: the pod discovery becomes one static target that carries the labels the
    discovery would give (so the project's relabelling runs unchanged), and the token file's path; scrape
    and rule evaluation interval 1 s. The app requires sign-in: only the token opens /metrics."""
    import json
    import os
    import shutil
    import time

    import yaml

    from tests.conftest import PROJECT
    from tests.integration.conftest import free_port

    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is needed: apt-get install prometheus (.ci/run does)"
    token = os.urandom(16).hex()
    users = tmp_path / "htpasswd"
    users.write_text("radiologist:" + bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode() + "\n")
    monkeypatch.setenv("CXR_METRICS_TOKEN", token)
    proc, base = start_server(server["dir"], server["uri"], "--htpasswd", str(users), log_name="scrape.log")
    prometheus = None
    try:
        assert requests.get(f"{base}/metrics", timeout=30).status_code == 401  # not without the token
        for _ in range(3):
            assert predict(base, auth=("radiologist", "correct horse")).status_code == 200
        monitoring = PROJECT / "infra" / "monitoring"
        config = yaml.safe_load((monitoring / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(monitoring / "alerts.yml")]
        (job,) = config["scrape_configs"]
        (tmp_path / "token").write_text(token)
        job["authorization"]["credentials_file"] = str(tmp_path / "token")
        pod = {"__meta_kubernetes_pod_label_app": "webapp", "__meta_kubernetes_pod_container_port_number": "8080"}
        pod["__meta_kubernetes_pod_name"] = "webapp-0"
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": [base.removeprefix("http://")], "labels": pod}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        api = f"127.0.0.1:{free_port()}"
        args = [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
        args.append(f"--web.listen-address={api}")
        prometheus = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "w"))
        value, deadline = None, time.time() + 90
        while value is None and time.time() < deadline:
            time.sleep(1)
            try:
                query = 'sum(cxr_predictions_total{job="cxr-webapp", pod="webapp-0"})'
                result = requests.get(f"http://{api}/api/v1/query", params={"query": query}, timeout=5).json()
                value = float(result["data"]["result"][0]["value"][1]) if result["data"]["result"] else None
            except requests.RequestException:
                continue
        assert value == 3.0, (tmp_path / "prom.log").read_text()[-2000:]
        (target,) = requests.get(f"http://{api}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        assert target["health"] == "up" and target["labels"]["pod"] == "webapp-0", json.dumps(target)
        for _ in range(30):  # every alert evaluates on the scraped series without an error
            rules = requests.get(f"http://{api}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
            if all(r["health"] == "ok" for r in rules):
                break
            time.sleep(1)
        assert len(rules) == 8 and all(r["health"] == "ok" for r in rules), [(r["name"], r["health"]) for r in rules]
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        proc.terminate()
        proc.wait(timeout=90)
