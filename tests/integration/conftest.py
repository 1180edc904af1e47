"""The running web app for the serving and browser tests: a real `cxr serve` process on loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT, tiny

CXR = str(Path(sys.executable).parent / "cxr")
MAX_MB = 8
MAX_INFLIGHT = 4  # serve.max_inflight of the test server: the overload test exceeds it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_tiny_model(tmp: Path, uri: str) -> str:
    """Train a 32-px model on synthetic data and register it as @challenger in the store at `uri`.

    Without the input gate and the population scope check: these tests drive the app's input handling with
    synthetic and real images alike; the gate is tested on a model trained on real X-rays
    (tests/model/test_input_gate.py), the scope check in tests/unit/test_population.py and the pipeline."""
    import mlflow

    from cxr.data.manifest import ingest
    from cxr.inference.classifier import log_model
    from cxr.training import train_model
    from tests.conftest import make_dataset

    params = tiny("ood.enabled=false", "scope.enabled=false")
    data = make_dataset(tmp / "data")
    ingest(data, tmp / "ds", params.ingest)
    train_model(tmp / "ds", params, tmp / "model", log_to_mlflow=False)
    from cxr.tracking import runs as tracking

    experiment_id = tracking.configure(uri, "serving-test")  # artifacts beside the test's database
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_model(tmp / "model")
    version = mlflow.register_model(info.model_uri, "covid-xray-vgg16", tags={"data_version": "test-data-v1"})
    mlflow.MlflowClient().set_registered_model_alias("covid-xray-vgg16", "challenger", version.version)
    return str(version.version)


class _Payload:
    """Unpickling this creates a file: stands in for code an attacker plants in a registered model."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickle_payload(root: Path, marker: Path) -> int:
    """Replace every registered model's python_model.pkl under `root` with the payload."""
    import pickle

    pickles = list(root.rglob("python_model.pkl"))
    for path in pickles:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    return len(pickles)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version = register_tiny_model(tmp, uri)
    plant_pickle_payload(tmp, tmp / "pwned")  # whoever can write the registry: the server must not run it
    params = tmp / "params.yaml"
    text = (PROJECT / "params.yaml").read_text().replace("max_upload_mb: 20", f"max_upload_mb: {MAX_MB}")
    params.write_text(text.replace("max_inflight: 24", f"max_inflight: {MAX_INFLIGHT}"))
    proc, base = start_server(tmp, uri, "--params", str(params))
    yield {"base": base, "version": version, "log": tmp / "server.log", "dir": tmp, "pid": proc.pid, "uri": uri}
    proc.terminate()
    proc.wait(timeout=90)


def start_server(
    tmp: Path, uri: str, *args: str, host: str = "127.0.0.1", log_name: str = "server.log", ready: bool = True
):
    """A real `cxr serve` process on a free port; returns it and its base URL once /readyz answers 200
    (`ready` false: once /healthz does, for an app that has no model to serve yet)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    log = open(tmp / log_name, "w")
    proc = subprocess.Popen(
        [CXR, "serve", "--host", host, "--port", str(port), *args],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/{'readyz' if ready else 'healthz'}", timeout=2).status_code == 200:
                break
        except requests.RequestException:  # refused, or accepted and not answered while the worker loads
            time.sleep(1)
        assert proc.poll() is None, (tmp / log_name).read_text()
    return proc, base
