"""The one sentence a step's tracking-store failure becomes (cxr/tracking/runs.py store_error)."""

from mlflow.exceptions import MlflowException

from cxr.tracking.runs import store_error

URI = "http://mlflow:5000"
RETRIES = "Max retries exceeded with url: {} (Caused by ResponseError('too many 500 error responses'))"


def _failed(path: str) -> MlflowException:
    return MlflowException(
        f"API request to {URI}{path} failed with exception HTTPConnectionPool(host='mlflow', "
        f"port=5000): " + RETRIES.format(path)
    )


def test_a_server_error_is_not_called_a_server_that_stopped():
    text = str(store_error(URI, "register", _failed("/api/2.0/mlflow/model-versions/update")))
    assert "answered step 'register' with server errors (HTTP 500)" in text and "stopped answering" not in text


def test_an_artifact_write_refused_names_the_bucket():
    text = str(store_error(URI, "train", _failed("/api/2.0/mlflow-artifacts/artifacts/1/abc/model.keras")))
    assert "artifact store" in text and "S3 credentials" in text


def test_a_server_that_stopped_says_restart_it():
    exc = MlflowException(f"API request to {URI}/api/2.0/mlflow/runs/get failed with exception Connection refused")
    assert "stopped answering during step 'evaluate'" in str(store_error(URI, "evaluate", exc))
