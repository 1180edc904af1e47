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


def scrape_config(tmp_path, target: str, token: str):
    """infra/monitoring/prometheus.yml for one static target, pod `webapp-0` (infra/monitoring/static_scrape.py,
    which the cluster rehearsal uses too), 1 s scrape and rule evaluation intervals."""
    import importlib.util

    from tests.conftest import PROJECT

    spec = importlib.util.spec_from_file_location("static_scrape", PROJECT / "infra/monitoring/static_scrape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.static_scrape_config([target], token, tmp_path)


def polled(check, seconds: int = 90):
    """The first truthy answer of `check()` within `seconds` (None: none came)."""
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            answer = check()
            if answer:
                return answer
        except (requests.RequestException, KeyError, IndexError):
            pass
        time.sleep(1)
    return None


@pytest.mark.system  # Debian's prometheus (.ci/run installs it)
def test_prometheus_scrapes_the_signed_in_app_with_the_token_using_the_projects_scrape_config(
    server, tmp_path, monkeypatch
):
    """Debian's Prometheus with the project's scrape configuration (`scrape_config`) against a real
    `cxr serve` that requires sign-in: only the token opens /metrics."""
    import os
    import shutil

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
        api = f"http://127.0.0.1:{free_port()}/api/v1"
        config = scrape_config(tmp_path, base.removeprefix("http://"), token)
        args = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
        args.append(f"--web.listen-address={api.removeprefix('http://').removesuffix('/api/v1')}")
        prometheus = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "w"))
        query = {"query": 'sum(cxr_predictions_total{job="cxr-webapp", pod="webapp-0"})'}
        counted = polled(lambda: requests.get(f"{api}/query", params=query, timeout=5).json()["data"]["result"])
        assert counted and float(counted[0]["value"][1]) == 3.0, (tmp_path / "prom.log").read_text()[-2000:]
        (target,) = requests.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
        assert target["health"] == "up" and target["labels"]["pod"] == "webapp-0", target

        def rules():  # every alert evaluates on the scraped series without an error
            found = requests.get(f"{api}/rules", timeout=5).json()["data"]["groups"][0]["rules"]
            return found if all(r["health"] == "ok" for r in found) else None

        evaluated = polled(rules, 30)
        assert evaluated and len(evaluated) == 8
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        proc.terminate()
        proc.wait(timeout=90)
