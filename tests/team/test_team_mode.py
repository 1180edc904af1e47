"""The CI retraining flow and its faults, end to end on loopback: DVC on S3 (moto), MLflow server on
PostgreSQL with artifacts in S3, `dvc pull` + `cxr retrain` in a fresh clone."""

import os
import shutil
import subprocess

import mlflow
import pytest
import requests
import yaml

from cxr.tracking.record import Lineage
from tests.conftest import PROJECT, make_dataset
from tests.integration.conftest import free_port
from tests.team.conftest import BIN, S3_ENV, MlflowServer, client_env, s3_client, wait_for

pytestmark = pytest.mark.slow
NAME = "covid-xray-vgg16"
TINY = [
    "--set",
    "lungs.size=32",
    "--set",
    "lungs.epochs=2",
    "--set",
    "train.weights=none",
    "--set",
    "train.image_size=32",
    "--set",
    "train.epochs=1",
    "--set",
    "gate.min_f1=0.0",
    "--set",
    "gate.min_val_per_class=1",
    "--set",
    "evaluate.bootstrap_samples=50",
    "--set",
    "augment.preview_images=2",
    "--set",
    "train.runtime=tensorflow",  # the reference pass: these tests are of the team's loop, not the runtime
]


def sh(*args, cwd, env=None, check=True):
    out = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or {**os.environ, **S3_ENV},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert out.returncode == 0, f"{args}: {out.stdout[-3000:]} {out.stderr[-3000:]}"
    return out


def dvc(*args, cwd):
    return sh(BIN / "dvc", *args, cwd=cwd)


def git(*args, cwd):
    return sh("git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args, cwd=cwd)


@pytest.fixture(scope="module")
def origin(tmp_path_factory, s3):
    """A project repository whose data is versioned by DVC on the S3 remote."""
    s3_client(s3).create_bucket(Bucket="cxr-dvc")
    repo = tmp_path_factory.mktemp("origin")
    git("init", "-q", "-b", "main", cwd=repo)
    shutil.copy(PROJECT / "params.yaml", repo / "params.yaml")
    dvc("init", "-q", cwd=repo)
    dvc("remote", "add", "-d", "s3", "s3://cxr-dvc/store", cwd=repo)
    dvc("remote", "modify", "s3", "endpointurl", s3, cwd=repo)
    make_dataset(repo / "data" / "covid-radiography-sample", per_class=8)
    # data.dvc tracks the folder the pipeline reads, as in the project (its md5 is the run's data version)
    (repo / "data.dvc").write_text("outs:\n- path: data/covid-radiography-sample\n")
    dvc("commit", "-f", "-q", "data.dvc", cwd=repo)
    dvc("push", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "data v1", cwd=repo)
    return repo


def cxr(server, *args, cwd, check=True):
    return sh(BIN / "cxr", *args, cwd=cwd, env=client_env(server), check=check)


def registry(server):
    """A client bound to this server for tracking and registry (the process may hold another store's URIs)."""
    return mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def versions(server):
    return sorted(registry(server).search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))


def kserve_storage(team, s3, clone, version, *args) -> dict:
    """`cxr registry kserve`'s predictor, after checking that it names `version` and that its storageUri holds
    the model KServe will load."""
    template = PROJECT / "infra" / "k8s" / "kserve" / "inferenceservice.yaml"
    destination = ("--artifacts-destination", "s3://cxr-mlflow/artifacts")  # the test server's
    shown = cxr(team, "registry", "kserve", "--template", str(template), *destination, *args, cwd=clone)
    (clone / "isvc.yaml").write_text(shown.stdout)  # valid against KServe's schema (its SDK, make tools)
    checker = PROJECT / "tools" / "kserve" / ".venv" / "bin" / "python"
    valid = subprocess.run(
        [str(checker), str(template.parent / "validate.py"), str(clone / "isvc.yaml")], capture_output=True, text=True
    )
    assert valid.returncode == 0, valid.stdout
    predictor = yaml.safe_load(shown.stdout)["spec"]["predictor"]
    assert {"name": "MLSERVER_MODEL_VERSION", "value": str(version)} in predictor["model"]["env"]
    bucket, prefix = predictor["model"]["storageUri"].removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for o in s3_client(s3).list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert f"{prefix.rstrip('/')}/MLmodel" in keys and any(k.endswith("model.keras") for k in keys), keys
    return predictor


def test_retrain_flow_from_a_fresh_clone(origin, team, s3, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    assert not (clone / "data" / "covid-radiography-sample").exists()  # only data.dvc travels with git
    dvc("pull", cwd=clone)
    assert len(list((clone / "data" / "covid-radiography-sample" / "COVID").iterdir())) == 8

    first = cxr(team, "retrain", *TINY, cwd=clone)
    assert "no registered version yet" in first.stdout and "gate: PASSED" in first.stdout
    (v1,) = versions(team)
    data_v1 = (clone / "data.dvc").read_text().split("md5: ")[1].split()[0]
    assert v1.tags["data_version"] == data_v1
    keys = [o["Key"] for o in s3_client(s3).list_objects_v2(Bucket="cxr-mlflow").get("Contents", [])]
    assert any(k.endswith("model.keras") for k in keys) and any("manifest.csv" in k for k in keys)

    again = cxr(team, "retrain", *TINY, cwd=clone)
    assert f"version {v1.version} was trained on the same data ({data_v1})" in again.stdout
    assert "nothing to do" in again.stdout
    assert len(versions(team)) == 1

    # new images land: the data scientist adds them, dvc commit, dvc push, git commit
    make_dataset(tmp_path / "more", per_class=2)
    for label in ("COVID", "Normal"):
        for f in (tmp_path / "more" / label).iterdir():
            shutil.copy(f, origin / "data" / "covid-radiography-sample" / label / f"new-{f.name}")
    dvc("commit", "-f", "-q", "data.dvc", cwd=origin)
    dvc("push", cwd=origin)
    git("commit", "-qam", "data v2", cwd=origin)
    # CI on the push: pull the repository and the data, retrain
    git("pull", "-q", cwd=clone)
    dvc("pull", cwd=clone)
    third = cxr(team, "retrain", *TINY, cwd=clone)
    assert f"changed since version {v1.version}: data {data_v1} -> " in third.stdout and "gate: PASSED" in third.stdout
    v1, v2 = versions(team)
    assert v2.tags["data_version"] != data_v1
    assert str(registry(team).get_model_version_by_alias(NAME, "challenger").version) == str(v2.version)

    # the release manager and the web app work unchanged against the team server
    assert "registered_by" in cxr(team, "registry", "list", cwd=clone).stdout
    canary = kserve_storage(team, s3, clone, v2.version, "--canary", "10")
    assert canary["canaryTrafficPercent"] == 10
    cxr(team, "registry", "promote", str(v2.version), "--reason", "retrained on new data", cwd=clone)
    released = kserve_storage(team, s3, clone, v2.version)
    assert "canaryTrafficPercent" not in released and released["model"]["storageUri"] == canary["model"]["storageUri"]
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "cxr"), "serve", "--port", str(port)],
        cwd=clone,
        env=client_env(team),
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", proc, tmp_path / "serve.log", seconds=180)
        image = next((clone / "data" / "covid-radiography-sample" / "COVID").iterdir()).read_bytes()
        body = requests.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("x.png", image)}).json()
        assert body["model_version"] == str(v2.version) and body["data_version"] == v2.tags["data_version"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tracking_server_stopping_mid_run_fails_clearly_and_registers_nothing(postgres, s3, tmp_path):
    from cxr.errors import CxrError
    from cxr.steps.context import RunContext
    from cxr.steps.evaluate import evaluate_step
    from cxr.steps.gate import gate_step
    from cxr.steps.ingest import ingest_step
    from cxr.steps.register import register_step
    from cxr.steps.train import train_step
    from cxr.tracking import runs as tracking
    from tests.conftest import tiny

    s3_client(s3).create_bucket(Bucket="cxr-faults")
    server = MlflowServer(postgres(), "s3://cxr-faults/a", s3, tmp_path).start()
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        before = len(versions(server))
        params = tiny()
        data = make_dataset(tmp_path / "data")
        run_id = tracking.start_pipeline_run(params, server.url, "fault", Lineage(data_version="f1").tags())
        ctx = RunContext(server.url, run_id)
        ingest_step(ctx, str(data), str(tmp_path / "ds"), params)
        model_uri = train_step(ctx, str(tmp_path / "ds"), str(tmp_path / "m"), params)
        evaluate_step(ctx, str(tmp_path / "ds"), str(tmp_path / "m"), str(tmp_path / "e"), params)
        decision = gate_step(ctx, str(tmp_path / "ds"), str(tmp_path / "e"), params)
        server.stop()
        with pytest.raises(CxrError, match=f"tracking server at {server.url} stopped answering during step 'register'"):
            register_step(ctx, model_uri, decision, params, Lineage(data_version="f1"))
        server.start()
        assert len(versions(server)) == before  # nothing half-registered
        # retry the failed step, now that the server is back: the same run registers its one version
        register_step(ctx, model_uri, decision, params, Lineage(data_version="f1"))
        assert len(versions(server)) == before + 1
    finally:
        os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        os.environ.pop("MLFLOW_HTTP_REQUEST_TIMEOUT", None)
        server.stop()


def test_an_artifact_store_refusing_writes_gives_a_clear_error(postgres, s3, tmp_path):
    server = MlflowServer(postgres(), "s3://no-such-bucket/artifacts", s3, tmp_path).start()
    try:
        data = make_dataset(tmp_path / "data")
        out = sh(
            BIN / "cxr", "pipeline", "run", *TINY, "--data", data, cwd=PROJECT, env=client_env(server), check=False
        )
        assert out.returncode != 0
        assert f"artifact store behind the MLflow server at {server.url} refused a write" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        server.stop()


def test_dvc_push_to_a_refusing_store_is_a_clear_error(origin, s3):
    dvc("remote", "add", "-f", "broken", "s3://missing-bucket/store", cwd=origin)
    dvc("remote", "modify", "broken", "endpointurl", s3, cwd=origin)
    out = sh(BIN / "dvc", "push", "-r", "broken", cwd=origin, check=False)
    assert out.returncode != 0 and "bucket" in (out.stderr + out.stdout).lower()


def test_a_cluster_ingest_fetches_the_data_version_from_the_s3_dvc_remote(origin, s3, tmp_path, monkeypatch):
    """What the compiled pipeline's ingest does with cluster.dvc_remote: fetch data.dvc's version by md5
    from the S3 remote DVC pushed to, check every file, and record the version of what it read."""
    from cxr.steps.context import resolve_data

    committed = yaml.safe_load((origin / "data.dvc").read_text())["outs"][0]
    version = committed["md5"]
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3}.items():
        monkeypatch.setenv(key, value)
    data_dir, read = resolve_data("", version, "s3://cxr-dvc/store", str(tmp_path / "fetched"))
    assert read == version
    assert data_dir == str(tmp_path / "fetched")
    assert len([p for p in (tmp_path / "fetched").rglob("*") if p.is_file()]) == committed["nfiles"]
