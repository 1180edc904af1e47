"""`cxr pipeline submit --wait` and `cxr retrain --on kfp`: the real command, the real compiled package and
kfp.Client over real HTTP, against a STAND-IN Kubeflow Pipelines API (tests/stand_ins/kfp_api.py: no KFP
server can run here). The stand-in records, in a real MLflow store, what the cluster's pipeline would
have recorded, so the outcome is read back the way it is from a real cluster."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import mlflow
import pytest
import yaml

from cxr.params import load_params
from cxr.tracking import runs as tracking
from cxr_cli.result import SCHEMA_PATH
from tests.conftest import PROJECT
from tests.stand_ins.kfp_api import KfpStandIn

CXR = str(Path(sys.executable).parent / "cxr")
TOKEN = "s3cr3t-token"


def cluster_records(store: str, outcome: str):
    """What the cluster's pipeline writes to MLflow for a run that ends with `outcome`."""

    def record(run: dict) -> None:
        params = load_params()
        name = run["runtime_config"]["parameters"]["run_name"]
        run_id = tracking.start_pipeline_run(params, store, name, {"data_version": "v.dir", "git_commit": "c"})
        client = mlflow.MlflowClient()
        for key, value in {"val_f1": 0.9, "val_f1_ci_low": 0.8, "val_f1_ci_high": 1.0, "val_n": 40}.items():
            client.log_metric(run_id, key, value)
        if outcome == "crashed":
            client.set_tag(run_id, "error", "GPU out of memory in the train step; lower train.batch_size")
            client.set_tag(run_id, "failed_step", "train")
            tracking.finish_pipeline_run(store, run_id, "FAILED")
            return
        client.set_tag(run_id, "gate.outcome", outcome)
        client.set_tag(run_id, "gate.passed", str(outcome == "passed").lower())
        client.set_tag(run_id, "gate.reason", f"the gate said {outcome}")
        client.set_tag(run_id, "registered_version", "1" if outcome == "passed" else "none")
        tracking.finish_pipeline_run(store, run_id)

    return record


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def cxr(*args, store: str, token: str | None = TOKEN):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    env.pop("KFP_TOKEN", None)
    if token:
        env["KFP_TOKEN"] = token
    return subprocess.run([CXR, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)


def submit(stand_in, store, *extra, token=TOKEN):
    return cxr(
        "pipeline", "submit", "--host", stand_in.url, "--wait", "--poll-interval", "0.1", "--json", *extra,
        store=store, token=token,
    )  # fmt: skip


def test_a_passing_run_on_the_cluster_finishes_like_a_local_one(store):
    states = ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    with KfpStandIn(states, cluster_records(store, "passed"), token=TOKEN) as kfp:
        out = submit(kfp, store)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    jsonschema.validate(result, json.loads(SCHEMA_PATH.read_text()))
    (run_id, run), = kfp.runs.items()  # fmt: skip
    assert result["orchestrator"] == "kfp" and result["kfp_run_id"] == run_id and result["kfp_state"] == "SUCCEEDED"
    assert result["registered"]["version"] == "1" and result["gate"]["outcome"] == "passed"
    # what the cluster received: the compiled package, and the data version and commit as run parameters
    parameters = run["runtime_config"]["parameters"]
    assert parameters["run_name"] == result["run_name"]
    assert parameters["data_version"] == yaml.safe_load((PROJECT / "data.dvc").read_text())["outs"][0]["md5"]
    assert parameters["git_commit"] == tracking.git_commit()
    spec = run["pipeline_spec"].get("pipeline_spec", run["pipeline_spec"])
    assert spec["pipelineInfo"]["name"] == "covid-xray-vgg16-training"
    assert "exec-train" in spec["deploymentSpec"]["executors"]
    assert [e["display_name"] for e in kfp.experiments.values()] == ["covid-xray"]
    # state changes, in order, on stderr (stdout is the JSON alone)
    progress = out.stderr
    order = [progress.index(f"kfp run {run_id}: {state}") for state in ("PENDING", "RUNNING", "SUCCEEDED")]
    assert order == sorted(order)
    assert "  train: SUCCEEDED" in progress and "gate: PASSED; registered covid-xray-vgg16 version 1" in progress


@pytest.mark.parametrize(
    ("states", "records", "error"),
    [
        (["RUNNING", "FAILED"], "crashed", "ended FAILED: the train step's pod was evicted"),
        (["RUNNING"], "crashed", "timed out: still RUNNING after 1 s; it was left running"),
    ],
    ids=["failed", "timeout"],
)
def test_a_failed_or_overdue_cluster_run_exits_2_with_one_sentence(store, states, records, error):
    with KfpStandIn(
        states, cluster_records(store, records), token=TOKEN, error="the train step's pod was evicted"
    ) as k:
        out = submit(k, store, "--timeout", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert error in out.stderr
    assert json.loads(out.stdout)["exit_code"] == 2


def test_a_refused_model_exits_3_and_says_why(store):
    with KfpStandIn(["RUNNING", "SUCCEEDED"], cluster_records(store, "failed"), token=TOKEN) as kfp:
        out = submit(kfp, store)
    assert out.returncode == 3, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["registered"] is None and result["not_registered_reason"] == "the gate said failed"


def test_the_token_comes_from_the_environment_and_a_missing_one_is_one_sentence(store):
    with KfpStandIn(["SUCCEEDED"], cluster_records(store, "passed"), token=TOKEN) as kfp:
        out = submit(kfp, store, token=None)
        assert all(method == "GET" for method, _ in kfp.requests)  # refused before anything was created
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"Kubeflow Pipelines at {kfp.url} asks for credentials: set $KFP_TOKEN (HTTP 401)" in out.stderr
    with KfpStandIn(["SUCCEEDED"], cluster_records(store, "passed"), token=TOKEN) as kfp:
        out = submit(kfp, store, token="a-stale-token")
    assert out.returncode == 2 and "refused the token in $KFP_TOKEN (HTTP 401)" in out.stderr
    assert "a-stale-token" not in out.stdout + out.stderr


def test_retrain_on_kfp_submits_when_the_data_is_new_and_writes_the_same_result(store):
    with KfpStandIn(["RUNNING", "SUCCEEDED"], cluster_records(store, "passed"), token=TOKEN) as kfp:
        out = cxr("retrain", "--on", "kfp", "--host", kfp.url, "--poll-interval", "0.1", "--json", store=store)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["retrain"]["ran"] and result["retrain"]["message"] == "no registered version yet: training"
    assert result["orchestrator"] == "kfp" and len(kfp.runs) == 1


def test_submit_keeps_the_packages_caching_and_links_the_mlflow_run_back(store):
    with KfpStandIn(["SUCCEEDED"], cluster_records(store, "passed"), token=TOKEN) as kfp:
        out = submit(kfp, store)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = kfp.runs.values()
    parameters = run["runtime_config"]["parameters"]
    assert parameters["kfp_host"] == kfp.url  # start_run tags the MLflow run with the KFP run's page
    assert "params_json" not in parameters and "pipeline_root" not in run["runtime_config"]
    spec = run["pipeline_spec"].get("pipeline_spec", run["pipeline_spec"])
    tasks = spec["root"]["dag"]["tasks"]["exit-handler-1"]
    cached = {
        n
        for n, t in spec["components"]["comp-exit-handler-1"]["dag"]["tasks"].items()
        if t.get("cachingOptions", {}).get("enableCache")
    }
    assert cached == {"ingest", "validate"} and tasks  # submit did not switch the package's caching off


def pipeline_cmd(kfp, store, *args, token=TOKEN):
    return cxr("pipeline", *args, "--host", kfp.url, store=store, token=token)


def test_upload_makes_versions_of_one_named_pipeline_named_by_commit(store):
    with KfpStandIn([], token=TOKEN) as kfp:
        first = pipeline_cmd(kfp, store, "upload", "--json")
        assert first.returncode == 0, first.stderr[-3000:]
        made = json.loads(first.stdout)
        assert made["created_pipeline"] and made["version_name"] == tracking.git_commit()
        again = pipeline_cmd(kfp, store, "upload", "--version", "v2-more-epochs", "--set", "train.epochs=7")
        assert again.returncode == 0 and "uploaded covid-xray-vgg16-training version v2-more-epochs" in again.stdout
        (pipeline,) = kfp.pipelines.values()
        versions = kfp.versions[pipeline["pipeline_id"]]
        # the pipeline's own first version, then the two named ones, each a full package with typed parameters
        assert [v["display_name"] for v in versions][1:] == [tracking.git_commit(), "v2-more-epochs"]
        inputs = versions[-1]["pipeline_spec"]["root"]["inputDefinitions"]["parameters"]
        assert inputs["train_epochs"]["defaultValue"] == 7
        duplicate = pipeline_cmd(kfp, store, "upload", "--version", "v2-more-epochs")
    assert duplicate.returncode == 2 and "Traceback" not in duplicate.stderr
    assert "already has a version named 'v2-more-epochs'; pass --version with a new name" in duplicate.stderr


def test_schedule_creates_or_replaces_one_recurring_run_of_the_newest_version(store):
    with KfpStandIn([], token=TOKEN) as kfp:
        missing = pipeline_cmd(kfp, store, "schedule", "--cron", "0 3 * * 1")
        assert (
            missing.returncode == 2
            and "has no pipeline 'covid-xray-vgg16-training'; run `cxr pipeline upload` first" in missing.stderr
        )
        assert pipeline_cmd(kfp, store, "upload", "--version", "a").returncode == 0
        assert pipeline_cmd(kfp, store, "upload", "--version", "b").returncode == 0
        out = pipeline_cmd(kfp, store, "schedule", "--cron", "0 3 * * 1", "--json")
        assert out.returncode == 0, out.stderr[-3000:]
        made = json.loads(out.stdout)
        assert made["version"] == "b" and made["cron"] == "0 0 3 * * 1" and made["replaced"] == []
        (job,) = kfp.recurring.values()
        assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1" and int(job["max_concurrency"]) == 1
        assert job["runtime_config"]["parameters"]["kfp_host"] == kfp.url
        pinned = json.loads(
            pipeline_cmd(kfp, store, "schedule", "--cron", "30 2 * * *", "--version", "a", "--json").stdout
        )
        assert pinned["replaced"] == [made["recurring_run_id"]] and pinned["version"] == "a"
        (job,) = kfp.recurring.values()  # replaced, not added
        assert (
            job["pipeline_version_reference"]["pipeline_version_id"]
            == kfp.versions[job["pipeline_version_reference"]["pipeline_id"]][1]["pipeline_version_id"]
        )
        bad = pipeline_cmd(kfp, store, "schedule", "--cron", "every monday")
        unknown = pipeline_cmd(kfp, store, "schedule", "--cron", "0 3 * * 1", "--version", "zzz")
    assert bad.returncode == 2 and "Cron expression 'every monday' is not valid; give 5 fields" in bad.stderr
    assert unknown.returncode == 2 and "has no version 'zzz'" in unknown.stderr


def test_runs_lists_the_newest_runs_with_state_and_their_mlflow_links(store):
    def record(run):
        cluster_records(store, "passed")(run)
        client = mlflow.MlflowClient(tracking_uri=store)
        (parent,) = client.search_runs(
            [client.get_experiment_by_name("covid-xray").experiment_id],
            filter_string=f"attributes.run_name = '{run['runtime_config']['parameters']['run_name']}'",
        )
        client.set_tag(parent.info.run_id, "kfp_run_id", run["run_id"])  # what start_run tags on the cluster

    with KfpStandIn(["SUCCEEDED"], record, token=TOKEN) as kfp:
        assert submit(kfp, store).returncode == 0
        out = pipeline_cmd(kfp, store, "runs", "--json")
        text = pipeline_cmd(kfp, store, "runs")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(out.stdout)
    (kfp_run_id,) = kfp.runs
    assert row["kfp_run_id"] == kfp_run_id and row["state"] == "SUCCEEDED"
    assert row["gate"] == "passed" and row["registered_version"] == "1"
    assert row["mlflow_url"].endswith(f"/runs/{row['mlflow_run_id']}?workflowType=machine_learning")
    assert row["url"].endswith(kfp_run_id)
    assert f"mlflow: {row['mlflow_url']}" in text.stdout and "gate passed, v1" in text.stdout
