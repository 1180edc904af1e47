"""Release management with real identities: the MLflow server runs the cxr-auth app (MLflow's basic-auth,
admin from a secret, @champion reserved to release managers) on PostgreSQL + S3, via mlflow/server.sh."""

import subprocess

import mlflow
import pytest

from tests.conftest import PROJECT, make_dataset
from tests.team.conftest import BIN, MlflowServer, client_env, s3_client

pytestmark = pytest.mark.slow
ADMIN = ("admin", "admin-secret-from-a-vault")
USERS = {"alice": ("data-scientist", "alice-password-123"), "bob": ("release-manager", "bob-password-4567")}
WEBHOOKS = {  # as infra/compose/compose.yaml sets them: http to a private address, a fixed encryption key
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "c2lnbmVkLXdlYmhvb2tzLWZvci10aGUtY3hyLXRlc3Q=",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",  # subscribers are cached per event this long
}


@pytest.fixture(scope="module")
def secured(postgres, s3, tmp_path_factory):
    s3_client(s3).create_bucket(Bucket="cxr-auth")
    server = MlflowServer(postgres(), "s3://cxr-auth/artifacts", s3, tmp_path_factory.mktemp("auth"))
    server.env.update({"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1], "MLFLOW_AUTH_DATABASE_URI": postgres()})
    server.env.update(WEBHOOKS)
    server.start()
    yield server
    server.stop()


def as_user(server, user: str, password: str) -> dict:
    return client_env(server, MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)


def cxr(env: dict, *args, stdin: str = ""):
    return subprocess.run([BIN / "cxr", *args], cwd=PROJECT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def register_as_alice(server, tmp_path, monkeypatch) -> str:
    """Alice (data scientist) runs the pipeline's steps on tiny data: a new version with @challenger."""
    from tests.integration.test_registry import pipeline

    for key, value in as_user(server, "alice", USERS["alice"][1]).items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    return pipeline(tmp_path, server.url, make_dataset(tmp_path / "data", per_class=8))


def test_only_release_managers_move_champion_and_history_names_the_login(secured, tmp_path, monkeypatch):
    admin = as_user(secured, *ADMIN)
    for user, (role, password) in USERS.items():
        out = cxr(admin, "team", "add-user", user, "--role", role, "--password-stdin", stdin=password + "\n")
        assert out.returncode == 0, out.stderr
        assert password not in out.stdout + out.stderr
    version = register_as_alice(secured, tmp_path, monkeypatch)
    alice, bob = (as_user(secured, u, USERS[u][1]) for u in ("alice", "bob"))

    refused = cxr(alice, "registry", "promote", version, "--reason", "looks good to me")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "alice may not move @champion of 'covid-xray-vgg16': only release managers" in refused.stderr
    assert cxr(bob, "registry", "promote", version, "--reason", "ship", "--by", "mallory").returncode == 2
    done = cxr(bob, "registry", "promote", version, "--reason", "validated on the new sample")
    assert done.returncode == 0, done.stderr
    history = cxr(bob, "registry", "history").stdout
    assert f"promote  v- -> v{version}  by bob: validated on the new sample" in history
    assert "[FAILED]  by alice" in history  # her attempt is on the record too

    eve = cxr(alice, "team", "add-user", "eve", "--role", "ci", "--password-stdin", stdin="eve-pw-8910-x\n")
    assert eve.returncode == 2 and "are you signed in as an admin?" in eve.stderr
    listed = cxr(bob, "registry", "list").stdout
    assert "alice" in listed  # registered_by: the login that registered it
    anonymous = {k: v for k, v in alice.items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    refused = cxr(anonymous, "registry", "list")
    assert refused.returncode == 2 and "asks you to sign in: set MLFLOW_TRACKING_USERNAME" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_promotion_reaches_a_running_web_app_at_once_through_the_signed_webhook(secured, tmp_path, monkeypatch):
    """The app polls the registry only every 10 minutes here: the webhook alone brings the new champion."""
    import os
    import time

    import requests

    from tests.integration.conftest import start_server

    admin, secret = as_user(secured, *ADMIN), f"webhook-{os.urandom(16).hex()}"
    reader = cxr(
        admin, "team", "add-user", "webapp", "--role", "reader", "--password-stdin", stdin="webapp-pw-123456\n"
    )
    assert reader.returncode == 0, reader.stderr
    (tmp_path / "v2").mkdir()
    version = register_as_alice(secured, tmp_path / "v2", monkeypatch)  # a second version; the first is champion
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT / "params.yaml").read_text().replace("reload_s: 30", "reload_s: 600"))
    for key, value in {"MLFLOW_TRACKING_USERNAME": "webapp", "MLFLOW_TRACKING_PASSWORD": "webapp-pw-123456"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CXR_WEBHOOK_SECRET", secret)
    proc, base = start_server(tmp_path, secured.url, "--params", str(params))
    try:
        before = requests.get(base + "/readyz", timeout=10).json()["model_version"]
        assert before != version
        subscribed = cxr(admin, "team", "subscribe-webapp", f"{base}/hooks/mlflow", stdin=secret + "\n")
        assert subscribed.returncode == 0 and secret not in subscribed.stdout, subscribed.stderr
        forged = requests.post(base + "/hooks/mlflow", json={"entity": "model_version_alias"}, timeout=10)
        assert forged.status_code == 401  # unsigned: ignored
        bob = as_user(secured, "bob", USERS["bob"][1])
        assert cxr(bob, "registry", "promote", version, "--reason", "webhook test").returncode == 0
        promoted, served = time.monotonic(), before
        while served != version and time.monotonic() - promoted < 300:  # the load itself takes a minute here
            time.sleep(0.5)
            served = requests.get(base + "/readyz", timeout=10).json()["model_version"]
        took = time.monotonic() - promoted
        assert served == version and took < 300, took  # against a 600 s polling interval: the webhook woke it
    finally:
        proc.terminate()
        proc.wait(timeout=60)
