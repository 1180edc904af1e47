"""Each kfp component through its python_func, with temporary artifact folders and a real
(temporary, SQLite) MLflow store: the same code the pipeline runs, without the orchestrator."""

import json
from pathlib import Path

import mlflow
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model, PipelineTaskFinalStatus

from components import kfp_steps as c
from components.parameters import parameter_values, pipeline_parameters
from cxr.data.versions import dir_md5
from cxr.errors import CxrError
from cxr.release.registry import CHAMPION
from cxr.tracking.signature import params_hash
from tests.conftest import tiny


def art(cls, tmp_path, name):
    return cls(name=name, uri=str(tmp_path / "artifacts" / name), metadata={})


def typed(component, params) -> dict:
    """The typed run parameters `component` declares, with their values in `params` (as the pipeline passes them)."""
    declared = component.component_spec.inputs
    return {name: value for name, value in parameter_values(params).items() if name in declared}


def ingest_and_validate(component_params, tiny_data, tmp_path, name="x"):
    dataset, validation = art(Dataset, tmp_path, f"dataset-{name}"), art(Dataset, tmp_path, f"validation-{name}")
    (data_version,) = c.ingest.python_func(
        data_dir=str(tiny_data),
        dvc_remote="",
        data_version="abc123.dir",
        folder_version="",
        code_version="c0de",
        dataset=dataset,
        **typed(c.ingest, component_params),
    )
    report = art(HTML, tmp_path, f"report-{name}.html")
    (valid,) = c.validate.python_func(
        dataset=dataset,
        code_version="c0de",
        validation=validation,
        report=report,
        **typed(c.validate, component_params),
    )
    return dataset, validation, report, data_version, valid


def start_run(dataset, validation, data_version, tracking_uri, params):
    (run_id,) = c.start_run.python_func(
        dataset=dataset,
        validation=validation,
        tracking_uri=tracking_uri,
        run_name="unit",
        data_dir=str(dataset.path),
        dvc_remote="",
        data_version="abc123.dir",
        data_version_read=data_version,
        git_commit="deadbeef",
        kfp_run_id="kfp-unit",
        kfp_host="https://kfp.example.org/pipeline",
        image_cpu="registry.example.org/cxr/cxr-python-components@sha256:" + "a" * 64,
        image_gpu="",
        **typed(c.start_run, params),
    )
    return run_id


@pytest.fixture
def ingested(tiny_data, tmp_path, tracking_uri, tiny_params):
    dataset, validation, report, data_version, valid = ingest_and_validate(tiny_params, tiny_data, tmp_path)
    assert data_version == dir_md5(tiny_data) and valid
    assert "<html" in open(report.path).read().lower()
    # ingest and validate wrote nothing to MLflow: they are cached across runs
    assert mlflow.search_runs(search_all_experiments=True).empty
    return dataset, start_run(dataset, validation, data_version, tracking_uri, tiny_params)


def test_start_run_opens_the_pipeline_run_with_lineage_params_and_the_data_record(ingested, tiny_data, tracking_uri):
    dataset, run_id = ingested
    run = mlflow.get_run(run_id)
    assert run.info.run_name == "unit"
    assert run.data.tags["profile"] == "cpu" and run.data.tags["kfp_run_id"] == "kfp-unit"
    assert run.data.tags["kfp_run_url"] == "https://kfp.example.org/pipeline/#/runs/details/kfp-unit"
    assert run.data.tags["image_cpu"].endswith("@sha256:" + "a" * 64) and "image_gpu" not in run.data.tags
    # the version of what was read, not the one asked for
    assert run.data.tags["data_version"] == dir_md5(tiny_data) != "abc123.dir"
    assert run.data.tags["data_version_requested"] == "abc123.dir"
    # every effective parameter, as the typed inputs carried them (20.0 stays the int 20)
    assert run.data.params["train.image_size"] == "32" and run.data.params["train.stat_blocks"] == "(3, 4, 5)"
    assert run.data.metrics["n_images"] == 12
    children = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{run_id}'", output_format="list"
    )
    assert {r.info.run_name for r in children} == {"ingest", "validate"}


def test_finalize_closes_a_run_a_dead_step_left_running(ingested, tiny_params, tracking_uri):
    _, run_id = ingested
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    status = PipelineTaskFinalStatus(
        state="FAILED", pipeline_job_resource_name="p", pipeline_task_name="t", error_code=1, error_message="OOMKilled"
    )
    common = {"tracking_uri": tracking_uri, "kfp_run_id": "kfp-unit", **typed(c.finalize, tiny_params)}
    assert c.finalize.python_func(status=status, **common) == ("FAILED",)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "OOMKilled"
    assert c.finalize.python_func(status=status, **common) == ("",)  # nothing left to close


def test_a_failed_validation_is_cached_as_an_outcome_and_stops_the_run_at_start(tiny_data, tmp_path, tracking_uri):
    strict = tiny("validate.min_width=100")
    dataset, validation, _, data_version, valid = ingest_and_validate(strict, tiny_data, tmp_path, "strict")
    assert valid is False  # an outcome (cacheable), not an exception
    with pytest.raises(CxrError, match="narrower than 100"):
        start_run(dataset, validation, data_version, tracking_uri, strict)
    (run,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.profile = 'cpu'", output_format="list")
    assert run.info.status == "FAILED" and run.data.tags["failed_step"] == "validate"


def test_each_component_takes_only_the_run_parameters_it_reads():
    assert set(typed(c.ingest, tiny())) == {p.name for p in pipeline_parameters() if p.dotted.startswith("ingest.")}
    assert set(typed(c.validate, tiny())) - {"ingest_near_duplicate_bits"} == {
        p.name for p in pipeline_parameters() if p.dotted.startswith("validate.")
    }
    assert "gate_min_f1" not in typed(c.train, tiny()) and "gate_min_f1" in typed(c.gate, tiny())
    assert set(typed(c.evaluate, tiny())) == {
        "evaluate_bootstrap_samples",
        "evaluate_prevalence",
        "evaluate_external_dir",
        "train_seed",
    }
    assert set(typed(c.start_run, tiny())) == {p.name for p in pipeline_parameters()} | {"profile"}


def train_and_evaluate(dataset, tmp_path, common: dict, tiny_params) -> tuple[str, float]:
    """The augment, train and evaluate components in turn; (the logged model's URI, validation F1)."""
    run_id = common["parent_run_id"]
    augmentation = art(Dataset, tmp_path, "augmentation")
    c.augment.python_func(dataset=dataset, augmentation=augmentation, **common, **typed(c.augment, tiny_params))
    spec = json.loads(open(f"{augmentation.path}/augmentation.json").read())
    a = tiny_params.augment
    assert (spec["rotation_range_deg"], spec["horizontal_flip"]) == (a.rotation_deg, a.horizontal_flip)

    model = art(Model, tmp_path, "model")
    (model_uri,) = c.train.python_func(
        dataset=dataset, augmentation=augmentation, model=model, **common, **typed(c.train, tiny_params)
    )
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
        **typed(c.evaluate, tiny_params),
    )
    assert 0.0 <= f1 <= 1.0
    assert metrics.metadata["val_f1"] == pytest.approx(f1)
    assert val_cm.metadata["confusionMatrix"]["annotationSpecs"][0]["displayName"] == "COVID"
    logged = mlflow.get_run(run_id).data.metrics
    assert logged["val_f1"] == pytest.approx(f1) and "test_bce" in logged
    return model_uri, f1


@pytest.mark.slow  # fits a network
def test_train_evaluate_gate_register_and_reject(ingested, tmp_path, tracking_uri, tiny_params):
    dataset, run_id = ingested
    common = {"tracking_uri": tracking_uri, "parent_run_id": run_id}
    model_uri, _ = train_and_evaluate(dataset, tmp_path, common, tiny_params)
    logged = mlflow.get_run(run_id).data.metrics
    report = art(Dataset, tmp_path, "report")
    summary = art(Markdown, tmp_path, "summary")
    decision = art(Artifact, tmp_path, "decision")
    gate_args = {"dataset": dataset, "report": report, "mlflow_ui": "http://mlflow.example.org", "summary": summary}
    (outcome,) = c.gate.python_func(**gate_args, decision=decision, **common, **typed(c.gate, tiny_params))
    assert outcome == "passed" and decision.metadata["outcome"] == "passed"  # tiny: min_f1 0, min_val_per_class 1
    assert json.loads(open(decision.path).read())["test"]["f1"] == pytest.approx(
        logged["test_f1"]
    )  # recorded, not decided on
    page = open(summary.path).read()
    assert page.startswith("## Gate: PASSED") and "http://mlflow.example.org/#/experiments/" in page
    assert page.rstrip().endswith(f"/runs/{run_id}?workflowType=machine_learning)")  # the model-training view
    registering = {"model_uri": model_uri, "decision": decision, "data_version": "abc123", "git_commit": "deadbeef"}
    (version,) = c.register.python_func(**registering, **common, **typed(c.register, tiny_params))
    # a retried register step (the cluster retries it) finds the version its first attempt registered
    assert c.register.python_func(**registering, **common, **typed(c.register, tiny_params)) == (version,)
    mv = mlflow.MlflowClient().get_model_version_by_alias("covid-xray-vgg16", "challenger")
    assert str(mv.version) == version and mv.tags["data_version"] == "abc123" and mv.tags["run_id"] == run_id
    assert mv.tags["gate.passed"] == "true"
    assert mv.tags["params_hash"] == mlflow.get_run(run_id).data.tags["params_hash"] == params_hash(tiny_params)
    assert_the_ui_shows_lineage_metrics_and_the_card(run_id, model_uri, mv)

    # with that version as champion, a candidate must now match its F1 re-scored on the same split
    mlflow.MlflowClient().set_registered_model_alias("covid-xray-vgg16", CHAMPION, version)
    demanding = typed(c.gate, tiny("gate.min_delta=0.5"))
    refused = art(Artifact, tmp_path, "refused")
    (outcome,) = c.gate.python_func(**gate_args, decision=refused, **common, **demanding)
    # the same model on the same images: a paired difference of exactly 0, never 0.5 better
    assert (
        outcome == "failed" and f"champion v{version} F1 = +0.0000" in json.loads(open(refused.path).read())["reason"]
    )
    (reason,) = c.reject.python_func(decision=refused, tracking_uri=tracking_uri, parent_run_id=run_id)
    assert "gate.min_delta 0.5" in reason
    assert mlflow.get_run(run_id).data.tags["registered_version"] == "none"
    assert len(mlflow.MlflowClient().search_model_versions("name='covid-xray-vgg16'")) == 1


def test_the_components_are_written_out_from_their_sources():
    """components/kfp_steps.py is what `python -m components.generate` writes from components/sources.py."""
    from components.generate import TARGET, generate

    assert TARGET.read_text() == generate(), "run `.venv/bin/python -m components.generate` and commit the result"


def test_a_component_signature_is_plain_typed_python():
    import inspect

    signature = inspect.signature(c.evaluate.python_func)
    assert signature.parameters["evaluate_bootstrap_samples"].annotation is int
    assert "params" not in signature.parameters


def assert_the_ui_shows_lineage_metrics_and_the_card(run_id: str, model_uri: str, mv) -> None:
    """What the MLflow UI shows: the run's three dataset inputs, the model's metrics (per dataset) and
    parameters, the epoch curves on the pipeline run, the card as the version's description."""
    from cxr.release.card import MODEL_PURPOSE

    run = mlflow.get_run(run_id)
    assert {i.dataset.source_type for i in run.inputs.dataset_inputs} == {"dvc"}
    assert len(run.inputs.dataset_inputs) == 3 and "epoch/loss" in run.data.metrics
    model = mlflow.get_logged_model(model_uri.removeprefix("models:/"))
    by_dataset = {(m.key, m.dataset_name) for m in model.metrics}
    assert any(key == "val_f1" and name.endswith("-val") for key, name in by_dataset)
    assert model.params["train.image_size"] == "32"
    assert mv.description.startswith("**Promotion gate: PASSED**") and "# Model card" in mv.description
    assert mlflow.MlflowClient().get_registered_model("covid-xray-vgg16").description == MODEL_PURPOSE


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
    assert set(package["components"]["comp-ingest"]["outputDefinitions"]["parameters"]) == {"data_version"}
    assert set(package["components"]["comp-start-run"]["outputDefinitions"]["parameters"]) == {"run_id"}


@pytest.mark.slow  # fits a network
def test_the_logged_model_carries_an_input_example_and_the_tensorflow_that_trained_it(tmp_path):
    from importlib.metadata import packages_distributions, version

    from cxr.inference.classifier import log_model
    from tests.conftest import train_on_sample

    model_dir = train_on_sample(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    experiment = mlflow.create_experiment("logged", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):  # artifacts in tmp_path, not ./mlruns
        info = log_model(model_dir)
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    requirements = open(f"{local}/requirements.txt").read().split()
    (trained_with,) = packages_distributions()["tensorflow"]
    assert f"{trained_with.replace('_', '-').lower()}=={version(trained_with)}" in requirements
    assert info.saved_input_example_info["type"] == "dataframe"
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert bytes(example["image"][0]).startswith(b"\x89PNG")
    # its code is the package's source, not its bytecode nor the reference films training reads
    code = {p.relative_to(f"{local}/code").as_posix() for p in Path(local, "code").rglob("*") if p.is_file()}
    assert "cxr/inference/classifier.py" in code and "cxr/serving/templates/index.html" in code
    assert not [p for p in code if p.endswith((".pyc", ".png", ".jpg"))], sorted(code)[:5]
