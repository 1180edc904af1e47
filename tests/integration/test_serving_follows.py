"""The web app follows the registry: it starts before anything is released, picks up the first version
by itself, and does not swap in a version that lacks an input gate (the old one keeps serving).

Real models in a real SQLite MLflow store; the app through Flask's test client (the full swap under a
running `cxr serve` is in tests/integration/test_release_loop.py)."""

import io
import time

import mlflow
import pytest

from cxr.release import promotion
from cxr.release.promotion import history, out_of_band, promote, release_problem
from cxr.serving.app import create_app
from cxr.serving.model_store import ModelFollower
from cxr_cli.registry import registry_history
from tests.conftest import SAMPLE
from tests.integration.conftest import register_tiny_model

pytestmark = pytest.mark.slow  # fits networks

NAME = "covid-xray-vgg16"
XRAY = (SAMPLE / "COVID" / "COVID-3.png").read_bytes()


def predict(client):
    return client.post("/api/predict", data={"file": (io.BytesIO(XRAY), "x.png")}, content_type="multipart/form-data")


def test_nothing_released_then_the_first_version_then_a_refused_one(tmp_path, tracking_uri):
    follower = ModelFollower("", NAME, reload_s=0.5).start()
    client = create_app(follower).test_client()
    try:
        assert follower.current is None and "No model has been released yet" in follower.reason
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "released" in ready.json["reason"]
        assert "No model has been released yet" in client.get("/").text
        refused = predict(client)
        assert refused.status_code == 503 and "Retry later" in refused.json["error"]

        v1 = register_tiny_model(tmp_path / "v1", tracking_uri)  # @challenger: served with a warning
        deadline = time.time() + 60
        while follower.current is None and time.time() < deadline:
            time.sleep(0.5)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["model_version"] == v1, ready.json
        answered = predict(client)
        assert answered.status_code == 200 and answered.json["model_version"] == v1
        assert f"version {v1}" in client.get("/").text  # the page's footer names the version
    finally:
        follower.stop()

    # a release manager forces @champion onto a version without an input gate (recorded): it is not served
    v2 = register_tiny_model(tmp_path / "v2", tracking_uri)
    promote(NAME, v2, "forced for the test", "rita", force=True)
    assert not follower.refresh()
    assert follower.current.version == v1
    assert f"version {v2} was not loaded" in follower.reload_error and "no input gate" in follower.reload_error
    ready = client.get("/readyz").json
    assert ready["model_version"] == v1 and "no input gate" in ready["reload_error"]
    assert predict(client).json["model_version"] == v1


def test_a_champion_moved_outside_the_release_process_is_not_served(tmp_path, tracking_uri, capsys):
    """@champion moved in the MLflow UI or by the API (no gate or card check, no record): the app keeps
    the last release, /readyz and /metrics say why, and `cxr registry history` shows the move."""
    v1 = register_tiny_model(tmp_path / "v1", tracking_uri)
    promote(NAME, v1, "the first release", "rita", force=True)  # no gate record: forced, and recorded
    follower = ModelFollower(f"models:/{NAME}@champion", NAME, reload_s=0).start()
    client = create_app(follower).test_client()
    assert follower.current.version == v1 and not follower.reload_error

    v2 = register_tiny_model(tmp_path / "v2", tracking_uri)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", v2)  # as the MLflow UI moves it
    assert not follower.refresh() and follower.current.version == v1
    assert f"version {v2} was not loaded" in follower.reload_error
    assert f"the last release (`cxr registry promote` by rita) put version {v1} there" in follower.reload_error
    ready = client.get("/readyz").json
    assert ready["model_version"] == v1 and "moved outside the release process" in ready["reload_error"]
    assert 'cxr_model_reloads_total{result="refused"} 1.0' in client.get("/metrics").text
    assert predict(client).json["model_version"] == v1

    registry_history(name=NAME, as_json=False, tracking_uri=tracking_uri)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"moved    v{v1} -> v{v2} [OUT-OF-BAND]  by unknown" in last

    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", v1)  # put back where the release put it
    assert not follower.refresh() and not follower.reload_error and out_of_band(NAME, history(NAME)) is None

    # a promotion under way (its intent recorded, the alias moved, `done` not yet written) is a release:
    # the alias webhook can reach the app in between
    intent = {"action": "promote", "version": v2, "from_version": v1, "by": "rita", "reason": "r", "id": "x1"}
    promotion._record(NAME, v2, {**intent, "forced": False, "status": "intent", "at": promotion._now()})
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", v2)
    assert release_problem(NAME, v2) == "" and out_of_band(NAME, history(NAME)) is None


def test_a_fixed_version_is_never_replaced(tmp_path, tracking_uri):
    v1 = register_tiny_model(tmp_path / "v1", tracking_uri)
    follower = ModelFollower(f"models:/{NAME}/{v1}", NAME, reload_s=0.5).start()
    assert follower.follows is None and follower.current.version == v1 and follower._thread is None
    assert "follows" not in create_app(follower).test_client().get("/readyz").json
