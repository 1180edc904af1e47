"""Team mode on loopback: PostgreSQL (Debian's, started by .ci/run via infra/ci/postgres.sh), an
S3-compatible server (moto in standalone server mode) and `mlflow server` (mlflow/server.sh) on both."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import PROJECT
from tests.integration.conftest import free_port

BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("CXR_TEST_POSTGRES", "postgresql://cxr:cxr@127.0.0.1:5432/postgres")
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: int = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not come up: {log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def postgres():
    """Creates fresh databases on the loopback PostgreSQL; drops them at the end of the session."""
    import psycopg2

    try:
        admin = psycopg2.connect(PG_ADMIN)
    except psycopg2.OperationalError as exc:
        raise AssertionError(
            f"PostgreSQL at {PG_ADMIN} is not reachable ({exc}); run infra/ci/postgres.sh as root (.ci/run does)."
        ) from exc
    admin.autocommit = True
    created = []

    def create() -> str:
        name = f"cxr_test_{secrets.token_hex(4)}"
        admin.cursor().execute(f"CREATE DATABASE {name}")
        created.append(name)
        # MLflow's SQLAlchemy store: name the psycopg2 driver explicitly (MLflow 3 defaults to psycopg 3)
        return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"

    yield create
    for name in created:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(scope="session")
def postgres_db(postgres):
    """The team server's database."""
    return postgres()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's standalone S3 server on loopback; yields its endpoint URL."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **S3_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/moto-api/", proc, log)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        **{"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"},
    )


class MlflowServer:
    """`mlflow/server.sh` on PostgreSQL + S3, stoppable and restartable on the same port."""

    def __init__(self, backend: str, artifacts: str, s3_endpoint: str, workdir: Path):
        self.port, self.backend, self.artifacts, self.workdir = free_port(), backend, artifacts, workdir
        self.env = {
            **os.environ,
            **S3_ENV,
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            "MLFLOW": str(BIN / "mlflow"),
            "MLFLOW_BACKEND_STORE_URI": backend,
            "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
            "MLFLOW_PORT": str(self.port),
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> MlflowServer:
        log = self.workdir / "mlflow-server.log"
        self.proc = subprocess.Popen(
            ["bash", str(PROJECT / "mlflow" / "server.sh")],
            env=self.env,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.url + "/health", self.proc, log, seconds=180)
        return self

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def team(postgres_db, s3, tmp_path_factory):
    """PostgreSQL-backed tracking server with artifacts in an S3 bucket, served through the server."""
    s3_client(s3).create_bucket(Bucket="cxr-mlflow")
    server = MlflowServer(postgres_db, "s3://cxr-mlflow/artifacts", s3, tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


# Client processes: no S3 credentials (artifacts go through the server), few retries so faults show fast.
def client_env(server: MlflowServer, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    return {
        **env,
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
