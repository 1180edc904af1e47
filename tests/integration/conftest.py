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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_tiny_model(tmp: Path, uri: str) -> str:
    """Train a 32-px model on synthetic data and register it as @challenger in the store at `uri`."""
    import mlflow

    from cxr.data import ingest
    from cxr.pyfunc import log_model
    from cxr.train import train_model
    from tests.conftest import make_dataset

    params = tiny()
    data = make_dataset(tmp / "data")
    ingest(data, tmp / "ds", params.ingest)
    train_model(tmp / "ds", params, tmp / "model", log_to_mlflow=False)
    from cxr import tracking

    experiment_id = tracking.configure(uri, "serving-test")  # artifacts beside the test's database
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_model(tmp / "model")
    version = mlflow.register_model(info.model_uri, "covid-xray-vgg16", tags={"data_version": "test-data-v1"})
    mlflow.MlflowClient().set_registered_model_alias("covid-xray-vgg16", "challenger", version.version)
    return str(version.version)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version = register_tiny_model(tmp, uri)
    params = tmp / "params.yaml"
    params.write_text((PROJECT / "params.yaml").read_text().replace("max_upload_mb: 20", f"max_upload_mb: {MAX_MB}"))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [CXR, "serve", "--port", str(port), "--params", str(params)],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(1)
        assert proc.poll() is None, (tmp / "server.log").read_text()
    yield {"base": base, "version": version, "log": tmp / "server.log", "dir": tmp}
    proc.terminate()
    proc.wait(timeout=30)
