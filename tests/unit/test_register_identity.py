"""Who registered a version: the MLflow identity, with no lookup that can raise in a container that
runs as a uid with no passwd entry and no USER variable."""

from types import SimpleNamespace

from cxr.steps.register import registered_by


def run(tags: dict, user_id: str = ""):
    return SimpleNamespace(data=SimpleNamespace(tags=tags), info=SimpleNamespace(user_id=user_id))


def test_the_signed_in_identity_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ci")
    assert registered_by(run({"mlflow.user": "someone"})) == "ci"


def test_without_sign_in_the_user_mlflow_recorded_on_the_run(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert registered_by(run({"mlflow.user": "alice"})) == "alice"
    assert registered_by(run({}, user_id="bob")) == "bob"


def test_nothing_known_is_unknown_not_an_error(monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "USER", "LOGNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert registered_by(run({})) == "unknown"
