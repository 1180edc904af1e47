"""The whole pipeline with every step in its container (kfp's DockerRunner), on the real sample."""

import shutil
import uuid

import mlflow
import pytest

from cxr.data.versions import dir_md5
from tests.conftest import PROJECT, SAMPLE, parent_run
from tests.containers.conftest import FAST, cxr

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('docker-mlflow') / 'mlflow.db'}"


# unique per session: a run's log file is named after the run, and a rerun on the same checkout appends to it
RUN_NAMES = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("docker-pass", "docker-fail", "docker-corrupt")}


def run(store, name, *extra, check=True):
    args = ["pipeline", "run", "--runner", "docker", *FAST, "--run-name", name, *extra]
    return cxr(*args, env={"MLFLOW_TRACKING_URI": store}, check=check)


def test_steps_in_containers_register_a_version_with_the_data_they_read(images, store):
    passing = ("--set", "gate.min_f1=0.0", "--set", "gate.min_val_per_class=1", "--no-cache")  # every step runs
    out = run(store, RUN_NAMES["docker-pass"], *passing)
    assert "gate: PASSED" in out.stdout
    log = (PROJECT / out.stdout.splitlines()[-1].removeprefix("  full log: ")).read_text()
    assert log.count("(ghcr.io/cxr/cxr-python-components:0.1.0) exited with code 0") == 9  # steps + exit handler
    found = parent_run(store, RUN_NAMES["docker-pass"])
    assert found.info.status == "FINISHED" and found.data.tags["orchestrator"] == "kfp"
    for key in ("val_f1", "val_accuracy", "val_bce", "test_f1", "n_images"):
        assert key in found.data.metrics
    mv = mlflow.MlflowClient().get_model_version_by_alias("covid-xray-vgg16", "challenger")
    assert mv.tags["run_id"] == found.info.run_id and mv.tags["data_version"] == dir_md5(SAMPLE)


def test_the_gate_failed_branch_in_containers_registers_nothing(images, store):
    out = run(
        store, RUN_NAMES["docker-fail"], "--set", "gate.min_f1=1.01", "--set", "gate.min_val_per_class=1", check=False
    )
    assert out.returncode == 3 and "gate: FAILED" in out.stdout
    found = parent_run(store, RUN_NAMES["docker-fail"])
    assert found.data.tags["registered_version"] == "none" and found.info.status == "FINISHED"


def test_a_step_that_raises_in_its_container_fails_the_pipeline(images, store, tmp_path):
    """kfp 2.17 can count a removed container as a success (kubeflow/pipelines#13332): not here."""
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    (data / "Normal" / "Normal-1.png").write_bytes((SAMPLE / "Normal" / "Normal-1.png").read_bytes()[:500])
    out = run(store, RUN_NAMES["docker-corrupt"], "--data", str(data), check=False)
    assert out.returncode != 0 and "Normal/Normal-1.png is corrupt or truncated" in out.stderr
    found = parent_run(store, RUN_NAMES["docker-corrupt"])
    assert found.info.status == "FAILED" and found.data.tags["failed_step"] == "validate"
    assert "augment" not in {c.data.tags.get("step") for c in _children(found)}


def _children(found):
    return mlflow.search_runs(
        experiment_names=["covid-xray"],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{found.info.run_id}'",
    )
