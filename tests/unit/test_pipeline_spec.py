"""The compiled package as a Kubeflow user meets it: typed run parameters generated from the params
dataclasses, caching only where it is safe, retries on the steps that reach S3/DVC/MLflow, a timeout on
every task."""

import dataclasses
import json

import pytest
import yaml

from components.parameters import parameter_values, pipeline_parameters
from cxr.params import Params, from_flat, load_params, section_fields
from pipelines.compile import compile_pipeline

KFP_TYPES = {
    int: "NUMBER_INTEGER",
    float: "NUMBER_DOUBLE",
    bool: "BOOLEAN",
    str: "STRING",
    list: "LIST",
    dict: "STRUCT",
}


def compiled(tmp_path, params: Params):
    spec, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", params).read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def tasks(spec) -> dict:
    """Every task of the pipeline, at any depth (exit handler, gate branches), by name."""
    out = {}
    for component in [spec["root"], *spec["components"].values()]:
        out |= component.get("dag", {}).get("tasks", {})
    components = spec["components"]
    return {name: task for name, task in out.items() if "executorLabel" in components[task["componentRef"]["name"]]}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return compiled(tmp_path_factory.mktemp("spec"), load_params())


def test_the_run_form_has_typed_parameters_and_no_json_blob(package):
    spec, _ = package
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    kinds = [p["parameterType"] for p in inputs.values()]
    assert kinds.count("NUMBER_INTEGER") >= 8 and kinds.count("NUMBER_DOUBLE") >= 8 and "BOOLEAN" in kinds
    assert "params_json" not in inputs
    for name, p in inputs.items():  # no string parameter smuggles a JSON document
        if p["parameterType"] == "STRING" and isinstance(p.get("defaultValue"), str):
            assert not p["defaultValue"].lstrip().startswith(("{", "[")), name
    lr = inputs["train_learning_rate"]
    assert lr["parameterType"] == "NUMBER_DOUBLE" and lr["defaultValue"] == 0.001
    assert inputs["train_epochs"]["parameterType"] == "NUMBER_INTEGER"
    assert "One of: linear, paper." in inputs["train_head"]["description"]
    for p in pipeline_parameters():  # every one typed from its field, described, defaulting to params.yaml
        assert inputs[p.name]["parameterType"] == KFP_TYPES[p.annotation] and inputs[p.name]["description"]
        assert inputs[p.name]["defaultValue"] == p.value(load_params()), p.name


def test_every_field_of_the_run_sections_is_a_parameter_with_no_list_to_keep():
    names = {p.dotted for p in pipeline_parameters()}
    for stage in ("ingest", "train", "lungs", "gate", "evaluate", "ood", "scope"):
        for f in section_fields(stage):
            assert f"{stage}.{f.name}" in names or f"{stage}.{f.name}" == "ingest.data_dir"
    assert not any(name.startswith(("serve.", "cluster.")) for name in names)


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_typed_values_rebuild_the_same_effective_parameters(profile):
    """What the steps rebuild from their typed inputs is what --profile and --set produced."""
    params = load_params(profile=profile, overrides=["train.epochs=3", "validate.allowed_modes=[L, RGB]"])
    values = parameter_values(params)
    rebuilt = from_flat({p.dotted: json.loads(json.dumps(values[p.name])) for p in pipeline_parameters()}, profile)
    for stage in ("ingest", "validate", "augment", "train", "lungs", "evaluate", "ood", "scope", "gate", "register"):
        expected = dataclasses.replace(
            getattr(params, stage), **({"data_dir": rebuilt.ingest.data_dir} if stage == "ingest" else {})
        )
        assert getattr(rebuilt, stage) == expected, stage
    assert rebuilt.train.epochs == 3 and rebuilt.validate.allowed_modes == ("L", "RGB")


def test_profile_and_overrides_become_the_packages_defaults(tmp_path):
    spec, _ = compiled(tmp_path, load_params(profile="paper", overrides=["train.epochs=7"]))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["train_epochs"]["defaultValue"] == 7 and inputs["train_image_size"]["defaultValue"] == 256
    assert inputs["profile"]["defaultValue"] == "paper" and inputs["train_head"]["defaultValue"] == "paper"


def test_only_ingest_and_validation_are_cached(package):
    spec, _ = package
    cached = {name for name, task in tasks(spec).items() if task.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"ingest", "validate"}
    ingest_inputs = set(spec["components"]["comp-ingest"]["inputDefinitions"]["parameters"])
    # keyed on the data version, the code and its own parameters: no MLflow run, nothing of training's
    assert {"data_version", "code_version", "ingest_seed"} <= ingest_inputs
    assert not ingest_inputs & {"parent_run_id", "run_name", "tracking_uri", "train_epochs", "gate_min_f1"}


def test_steps_that_reach_s3_or_mlflow_retry_and_every_task_has_a_timeout(package):
    spec, platform = package
    all_tasks = tasks(spec)
    retrying = {name for name, task in all_tasks.items() if task.get("retryPolicy", {}).get("maxRetryCount")}
    assert retrying == set(all_tasks) - {"validate"}
    assert all_tasks["train"]["retryPolicy"]["maxRetryCount"] == 1
    assert all_tasks["ingest"]["retryPolicy"]["backoffFactor"] == 2.0
    for name, task in all_tasks.items():
        executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
        assert int(platform[executor]["activeDeadlineSeconds"]) > 0, name
    assert int(platform["exec-train"]["activeDeadlineSeconds"]) == load_params().cluster.train_timeout_s
