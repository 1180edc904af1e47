"""The whole pipeline through kfp's local runner and the `cxr` command, on 40 real X-rays (the bundled
dataset's first version: small enough that its validation split cannot decide the gate)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import mlflow
import pytest
import yaml

from cxr.data.versions import dir_md5
from cxr_cli.result import SCHEMA_PATH
from tests.conftest import PROJECT, SAMPLE, first_sample, parent_run

pytestmark = pytest.mark.slow
CXR = str(Path(sys.executable).parent / "cxr")
SAMPLE40 = PROJECT / "build" / "test-sample-40"
NAME = "covid-xray-vgg16"
FAST = ["--set", "train.image_size=64", "--set", "train.epochs=1", "--data", str(SAMPLE40)]
FAST += ["--set", "lungs.size=32", "--set", "lungs.epochs=2"]


@pytest.fixture(scope="module", autouse=True)
def sample40():
    shutil.rmtree(SAMPLE40, ignore_errors=True)
    return first_sample(SAMPLE40)


def cxr(*args, uri: str, check=True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = subprocess.run([CXR, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def passed_run(store):
    permissive = ["--set", "gate.min_f1=0.0", "--set", "gate.min_val_per_class=1"]
    # every step runs, whatever an earlier run on this machine left in kfp's local cache
    out = cxr("pipeline", "run", *FAST, *permissive, "--no-cache", "--run-name", "it-pass", uri=store)
    return out


def test_the_terminal_shows_one_line_per_step_then_the_summary_and_next_steps(passed_run):
    lines = passed_run.stdout.splitlines()
    assert len(lines) < 40, passed_run.stdout
    steps = [line.split()[1] for line in lines if line.startswith("  ✓ ")]
    assert steps == ["ingest", "validate", "start-run", "augment", "train", "evaluate", "gate", "register", "finalize"]
    assert "executor" not in passed_run.stdout.lower() and "Traceback" not in passed_run.stdout + passed_run.stderr
    assert "40 images: 24 train, 8 val, 8 test" in passed_run.stdout
    assert lines[-1].startswith("  full log: ") and "cxr serve --model models:/covid-xray-vgg16/1" in passed_run.stdout
    log = PROJECT / lines[-1].removeprefix("  full log: ")
    assert "Executing task" in log.read_text()  # kfp's own output: in the log, not on the terminal


def test_passing_gate_registers_a_challenger_with_lineage_tags(passed_run, store):
    assert "gate: PASSED" in passed_run.stdout
    run = parent_run(store, "it-pass")
    assert run.info.status == "FINISHED"
    for key in ("val_f1", "val_accuracy", "val_bce", "val_roc_auc", "val_specificity", "test_f1"):
        assert key in run.data.metrics
    assert run.data.params["train.image_size"] == "64" and run.data.tags["profile"] == "cpu"
    children = mlflow.search_runs(
        experiment_names=["covid-xray"],
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
    )
    assert {c.data.tags["step"] for c in children} == {
        "ingest",
        "validate",
        "augment",
        "train",
        "evaluate",
        "gate",
        "register",
    }
    train = next(c for c in children if c.data.tags["step"] == "train")
    assert "loss" in train.data.metrics and "val_loss" in train.data.metrics
    mv = mlflow.MlflowClient().get_model_version_by_alias("covid-xray-vgg16", "challenger")
    assert mv.tags["data_version"] == dir_md5(SAMPLE40) and mv.tags["run_id"] == run.info.run_id
    assert mv.tags["gate.passed"] == "true" and float(mv.tags["gate.candidate_f1"]) == pytest.approx(
        run.data.metrics["val_f1"], abs=1e-6
    )
    assert run.data.tags["registered_version"] == str(mv.version)


def test_predict_on_images_the_pipeline_never_trained_on(passed_run, store):
    run = parent_run(store, "it-pass")
    report = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=next(
                    c.info.run_id
                    for c in mlflow.search_runs(
                        experiment_names=["covid-xray"],
                        output_format="list",
                        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.step = 'evaluate'",
                    )
                ),
                artifact_path="evaluation/test_report.json",
            )
        ).read_text()
    )
    files = [str(SAMPLE / p["source"]) for p in report["predictions"]]
    for uri in ("models:/covid-xray-vgg16@challenger", "models:/covid-xray-vgg16/1", run.data.tags["model_uri"]):
        out = cxr("predict", "--model", uri, *files, uri=store)
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        assert [r["file"] for r in rows] == files
        for row, expected in zip(rows, report["predictions"], strict=True):
            assert 0.0 <= row["probability"] <= 1.0 and row["label"] in {"COVID", "Normal"}
            assert row["probability"] == pytest.approx(expected["probability"], abs=1e-4)


def test_a_corrupt_image_stops_the_pipeline_before_training(tmp_path, store):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE40, data)
    (data / "Normal" / "Normal-1.png").write_bytes((SAMPLE / "Normal" / "Normal-1.png").read_bytes()[:500])
    out = cxr("pipeline", "run", *FAST, "--data", str(data), "--run-name", "it-corrupt", uri=store, check=False)
    assert out.returncode == 2
    assert "Normal/Normal-1.png is corrupt or truncated" in out.stderr
    # a failure of the data, not a crash: no third-party traceback (great-expectations' data docs included)
    assert "Traceback" not in out.stdout + out.stderr and len(out.stdout.splitlines()) < 20
    # the suite's verdict is validate's output; the step that records it on the MLflow run stops the pipeline
    assert "  ✗ start-run" in out.stdout and "FAILED at step validate" in out.stdout
    run = parent_run(store, "it-corrupt")
    assert run.info.status == "FAILED" and run.data.tags["failed_step"] == "validate"


def test_wrong_data_path_is_one_sentence(store, tmp_path):
    out = cxr("pipeline", "run", "--data", str(tmp_path / "nope"), uri=store, check=False)
    assert out.returncode == 2 and "does not exist; pass --data" in out.stderr and "Traceback" not in out.stderr


def test_compile_writes_a_package_whose_training_task_asks_for_a_gpu(tmp_path, store):
    path = tmp_path / "pipeline.yaml"
    cxr(
        "pipeline",
        "compile",
        "--output",
        str(path),
        "--image-registry",
        "registry.example.com/cxr",
        "--image-tag",
        "1.2.3",
        uri=store,
    )
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert train["image"] == "registry.example.com/cxr/cxr-python-train-gpu:1.2.3"
    assert executors["exec-ingest"]["container"]["image"] == "registry.example.com/cxr/cxr-python-components:1.2.3"
    branches = spec["components"]["comp-condition-branches-2"]["dag"]["tasks"]
    assert {t["taskInfo"]["name"] for t in branches.values()} == {"gate-passed", "gate-inconclusive", "gate-failed"}
    assert spec["root"]["dag"]["tasks"]["finalize"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    placement = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert placement["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert placement["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]


def test_submit_to_an_unreachable_cluster_is_one_sentence(store):
    out = cxr("pipeline", "submit", "--host", "http://127.0.0.1:9", uri=store, check=False)
    assert out.returncode == 2
    assert "Kubeflow Pipelines at http://127.0.0.1:9 cannot be reached" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_weight_file_fails_at_train_in_one_sentence(store):
    args = ["--set", "train.weights=imagenet", "--set", "train.weights_path=/nonexistent/vgg16.h5"]
    out = cxr("pipeline", "run", *FAST, *args, "--run-name", "it-weights", uri=store, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stdout + out.stderr
    assert "ImageNet weight file /nonexistent/vgg16.h5 (train.weights_path) does not exist" in out.stderr
    assert "  ✗ train" in out.stdout and "FAILED at step train" in out.stdout


def test_cross_validation_gates_on_out_of_fold_predictions_and_a_failing_gate_registers_nothing(
    passed_run, store, tmp_path
):
    """evaluate.cv_folds=3 on the sample: 3 fold models as child runs, cv_* mean/std on the parent run, the
    final model trained on all 32 train + val images, and the gate deciding on their 32 out-of-fold
    predictions, enough images per class for gate.min_val_per_class 10 (the plain run above had 8). The gate
    asks for an F1 no model reaches: the run exits 3, registers nothing and says why (one pipeline run for
    both: each costs minutes of the suite)."""
    args = ["--set", "evaluate.cv_folds=3", "--set", "gate.min_f1=1.01", "--run-name", "it-cv", "--json"]
    out = cxr("pipeline", "run", *FAST, *args, uri=store, check=False)
    assert out.returncode == 3, out.stderr[-3000:]
    result = json.loads(out.stdout)  # stdout holds the JSON object alone; the progress went to stderr
    jsonschema.validate(result, json.loads(SCHEMA_PATH.read_text()))
    assert "3-fold CV F1" in out.stderr and "fold" in out.stderr
    assert result["metrics"]["val"]["n"] == 32 and result["metrics"]["test"]["n"] == 8
    assert result["cross_validation"]["folds"] == 3 and result["calibration"]["temperature"] > 0
    # decided (not inconclusive) on the 32 out-of-fold predictions, and failed
    assert "gate: FAILED" in out.stderr and "< gate.min_f1 1.0100" in result["gate"]["reason"]
    assert result["gate"]["outcome"] == "failed" and result["registered"] is None
    run = parent_run(store, "it-cv")
    assert result["mlflow_run_id"] == run.info.run_id
    assert run.data.tags["gate.outcome"] == "failed" and run.data.tags["registered_version"] == "none"
    assert len(mlflow.MlflowClient().search_model_versions(f"name='{NAME}'")) == 1
    # the CI job summary, rendered from this real run's JSON
    (tmp_path / "result.json").write_text(out.stdout)
    summary = cxr("pipeline", "summary", str(tmp_path / "result.json"), uri=store).stdout
    assert summary.startswith("## Retraining: gate: FAILED; nothing registered")
    assert f"| Data version | `{result['data_version']}` |" in summary and "| val | 32 |" in summary
    assert "| **Normal** |" in summary and "< gate.min_f1 1.0100" in summary
    for name in ("f1", "accuracy", "sensitivity", "specificity"):
        assert f"cv_{name}_mean" in run.data.metrics and f"cv_{name}_std" in run.data.metrics
    assert run.data.tags["validation"] == "3-fold out-of-fold predictions on the 32 train + val images"
    client = mlflow.MlflowClient()
    (train,) = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.step = 'train'"
    )
    folds = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{train.info.run_id}'")
    assert sorted(f.data.tags["cv.fold"] for f in folds) == ["1", "2", "3"]
    assert sum(f.data.metrics["fold_n"] for f in folds) == 32
    assert all("val_loss" in f.data.metrics and "fold_f1" in f.data.metrics for f in folds)
    # the out-of-fold probabilities are what the evaluate step reported for "val"
    (evaluate,) = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.step = 'evaluate'"
    )
    val = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=evaluate.info.run_id, artifact_path="evaluation/val_report.json")
        ).read_text()
    )
    assert val["source"] == run.data.tags["validation"] and len(val["predictions"]) == 32
    assert {p["source"].split("/")[0] for p in val["predictions"]} == {"COVID", "Normal"}


@pytest.mark.system  # Debian's Chromium (make tools, .ci/run)
def test_the_mlflow_ui_shows_the_runs_their_datasets_the_models_metrics_and_the_card(passed_run, store, tmp_path):
    """What a data scientist and a release manager open, in a real browser on a real `mlflow server`: the
    experiment on its runs (not MLflow 3's GenAI overview), the run's three datasets, the logged model's
    metrics per split, and the model card as the registered version's description."""
    from playwright.sync_api import sync_playwright

    from cxr.tracking.runs import UI_VIEW, ui_url
    from tests.integration.conftest import free_port
    from tests.integration.test_browser import ARGS, CHROMIUM
    from tests.team.conftest import wait_for

    port, log = free_port(), open(tmp_path / "mlflow.log", "w")
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    serve = [mlflow_bin, "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*serve, "--workers", "1"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", proc, tmp_path / "mlflow.log")
        run = parent_run(store, "it-pass")
        experiment = run.info.experiment_id
        model_id = mlflow.MlflowClient(store).get_model_version(NAME, "1").source.removeprefix("models:/")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})

            def opened(url: str, text: str) -> str:
                page.goto(url)
                page.get_by_text(text).first.wait_for(timeout=90_000)
                return page.inner_text("body")

            body = opened(ui_url(base, experiment), "it-pass")
            assert "/runs" in page.url and "overview" not in page.url and "genai" not in page.url
            assert "test-sample-40-train" in body and "Training" in body and "Validation" in body
            body = opened(ui_url(base, experiment, run.info.run_id), "Datasets")
            assert "test-sample-40-train" in body and "gate.outcome" in body
            body = opened(f"{base}/#/experiments/{experiment}/models{UI_VIEW}", NAME)
            assert "v1" in body  # the logged model, registered as version 1
            body = opened(f"{base}/#/experiments/{experiment}/models/{model_id}{UI_VIEW}", "val_f1")
            assert "test_f1" in body and "test-sample-40-val" in body and "test-sample-40-test" in body
            body = opened(f"{base}/#/models/{NAME}/versions/1", "Model card")
            assert "Promotion gate" in body and "Research use only" in body
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
