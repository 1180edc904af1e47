"""Each kfp component through its python_func, with temporary artifact folders and a real
(temporary, SQLite) MLflow store: the same code the pipeline runs, without the orchestrator."""

import json

import mlflow
import pytest
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Metrics, Model, PipelineTaskFinalStatus

from components import steps as c
from cxr.data.versions import dir_md5
from cxr.errors import CxrError
from cxr.release.registry import CHAMPION
from tests.conftest import tiny


def art(cls, tmp_path, name):
    return cls(name=name, uri=str(tmp_path / "artifacts" / name), metadata={})


@pytest.fixture
def ingested(tiny_data, tmp_path, tracking_uri, tiny_params):
    dataset = art(Dataset, tmp_path, "dataset")
    run_id, data_version = c.ingest.python_func(
        data_dir=str(tiny_data),
        params_json=tiny_params.to_json(),
        tracking_uri=tracking_uri,
        run_name="unit",
        data_version="abc123.dir",
        git_commit="deadbeef",
        dvc_remote="",
        kfp_run_id="kfp-unit",
        dataset=dataset,
    )
    assert data_version == dir_md5(tiny_data)
    return dataset, run_id


def test_ingest_opens_the_pipeline_run_with_comparison_tags(ingested, tiny_data, tracking_uri):
    dataset, run_id = ingested
    run = mlflow.get_run(run_id)
    assert run.info.run_name == "unit"
    assert run.data.tags["profile"] == "cpu" and run.data.tags["kfp_run_id"] == "kfp-unit"
    # the version of what was read, not the one asked for
    assert run.data.tags["data_version"] == dir_md5(tiny_data) != "abc123.dir"
    assert run.data.tags["data_version_requested"] == "abc123.dir"
    assert run.data.params["train.image_size"] == "32"
    assert dataset.metadata["n_images"] == 12


def test_finalize_closes_a_run_a_dead_step_left_running(ingested, tiny_params, tracking_uri):
    _, run_id = ingested
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    status = PipelineTaskFinalStatus(
        state="FAILED", pipeline_job_resource_name="p", pipeline_task_name="t", error_code=1, error_message="OOMKilled"
    )
    common = {"params_json": tiny_params.to_json(), "tracking_uri": tracking_uri, "kfp_run_id": "kfp-unit"}
    assert c.finalize.python_func(status=status, **common) == ("FAILED",)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "OOMKilled"
    assert c.finalize.python_func(status=status, **common) == ("",)  # nothing left to close


def test_validate_writes_html_and_fails_on_bad_data(ingested, tmp_path, tracking_uri, tiny_params):
    dataset, run_id = ingested
    report = art(HTML, tmp_path, "report.html")
    assert c.validate.python_func(
        dataset=dataset,
        params_json=tiny_params.to_json(),
        tracking_uri=tracking_uri,
        parent_run_id=run_id,
        report=report,
    ) == (True,)
    assert "<html" in open(report.path).read().lower()
    with pytest.raises(CxrError, match="narrower than 100"):
        c.validate.python_func(
            dataset=dataset,
            params_json=tiny("validate.min_width=100").to_json(),
            tracking_uri=tracking_uri,
            parent_run_id=run_id,
            report=art(HTML, tmp_path, "report2.html"),
        )
    assert mlflow.get_run(run_id).data.tags["failed_step"] == "validate"


def test_train_evaluate_gate_register_and_reject(ingested, tmp_path, tracking_uri, tiny_params):
    dataset, run_id = ingested
    params_json = tiny_params.to_json()
    common = {"params_json": params_json, "tracking_uri": tracking_uri, "parent_run_id": run_id}
    augmentation = art(Dataset, tmp_path, "augmentation")
    c.augment.python_func(dataset=dataset, augmentation=augmentation, **common)
    spec = json.loads(open(f"{augmentation.path}/augmentation.json").read())
    a = tiny_params.augment
    assert (spec["rotation_range_deg"], spec["horizontal_flip"]) == (a.rotation_deg, a.horizontal_flip)

    model = art(Model, tmp_path, "model")
    (model_uri,) = c.train.python_func(dataset=dataset, augmentation=augmentation, model=model, **common)
    assert model_uri.startswith("models:/m-") and model.metadata["image_size"] == 32

    metrics, val_cm, test_cm = (
        art(Metrics, tmp_path, "m"),
        art(ClassificationMetrics, tmp_path, "v"),
        art(ClassificationMetrics, tmp_path, "t"),
    )
    (f1,) = c.evaluate.python_func(
        dataset=dataset,
        model=model,
        metrics=metrics,
        val_classification=val_cm,
        test_classification=test_cm,
        report=art(Dataset, tmp_path, "report"),
        **common,
    )
    assert 0.0 <= f1 <= 1.0
    assert metrics.metadata["val_f1"] == pytest.approx(f1)
    assert val_cm.metadata["confusionMatrix"]["annotationSpecs"][0]["displayName"] == "COVID"
    logged = mlflow.get_run(run_id).data.metrics
    assert logged["val_f1"] == pytest.approx(f1) and "test_bce" in logged

    report = art(Dataset, tmp_path, "report")
    outcome, decision = c.gate.python_func(dataset=dataset, report=report, **common)
    assert outcome == "passed"  # tiny_params: gate.min_f1 = 0, gate.min_val_per_class = 1
    assert json.loads(decision)["test"]["f1"] == pytest.approx(logged["test_f1"])  # recorded, not decided on
    (version,) = c.register.python_func(
        model_uri=model_uri, decision=decision, data_version="abc123", git_commit="deadbeef", **common
    )
    mv = mlflow.MlflowClient().get_model_version_by_alias("covid-xray-vgg16", "challenger")
    assert str(mv.version) == version and mv.tags["data_version"] == "abc123" and mv.tags["run_id"] == run_id
    assert mv.tags["gate.passed"] == "true"

    # with that version as champion, a candidate must now match its F1 re-scored on the same split
    mlflow.MlflowClient().set_registered_model_alias("covid-xray-vgg16", CHAMPION, version)
    demanding = {**common, "params_json": tiny("gate.min_delta=0.5").to_json()}
    outcome, decision = c.gate.python_func(dataset=dataset, report=report, **demanding)
    # the same model on the same images: a paired difference of exactly 0, never 0.5 better
    assert outcome == "failed" and f"champion v{version} F1 = +0.0000" in json.loads(decision)["reason"]
    (reason,) = c.reject.python_func(decision=decision, tracking_uri=tracking_uri, parent_run_id=run_id)
    assert "gate.min_delta 0.5" in reason
    assert mlflow.get_run(run_id).data.tags["registered_version"] == "none"
    assert len(mlflow.MlflowClient().search_model_versions("name='covid-xray-vgg16'")) == 1


def test_serving_needs_a_champion_or_a_challenger(tracking_uri):
    from cxr.serving.model_store import resolve_default

    with pytest.raises(CxrError, match="holds @champion or @challenger in this MLflow store"):
        resolve_default("covid-xray-vgg16")


def test_the_compiled_package_names_every_output_and_documents_every_input(tmp_path):
    """kfp copies the components' Args docstrings into the package: what the KFP UI shows a reader."""
    import yaml

    from cxr.params import load_params
    from pipelines.compile import compile_pipeline

    package, _ = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", load_params()).read_text())
    for name, component in package["components"].items():
        if not name.startswith("comp-") or "condition" in name or "exit-handler" in name:
            continue
        outputs = component.get("outputDefinitions", {}).get("parameters", {})
        assert "Output" not in outputs, name  # every returned value has a name
        for key, spec in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if key != "status":
                assert spec.get("description"), f"{name}.{key} has no description"
    assert set(package["components"]["comp-ingest"]["outputDefinitions"]["parameters"]) == {"run_id", "data_version"}
