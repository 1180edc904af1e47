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
