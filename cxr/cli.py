"""The `cxr` command: a thin shell over the library and the pipeline package."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from cxr.errors import CxrError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="COVID-19 chest X-ray classifier (VGG16).")
pipeline_app = typer.Typer(no_args_is_help=True, help="Run, compile or submit the Kubeflow pipeline.")
stage_app = typer.Typer(no_args_is_help=True, help="Pipeline steps one at a time (what dvc.yaml runs).")
app.add_typer(pipeline_app, name="pipeline")
registry_app = typer.Typer(
    no_args_is_help=True,
    help="The release manager's registry: list, compare, promote, roll back, history, model cards.",
)
app.add_typer(stage_app, name="stage")
app.add_typer(registry_app, name="registry")

ParamsOpt = typer.Option(None, "--params", help="params.yaml to read (default: the project's).")
ProfileOpt = typer.Option("cpu", "--profile", help="cpu (default, minutes on 2 cores) or paper (GPU).")
SetOpt = typer.Option(None, "--set", help="Override a parameter: stage.key=value (repeatable).")


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _load(params_file, profile, overrides):
    from cxr.params import load_params

    return load_params(params_file, profile, tuple(overrides or ()))


@pipeline_app.command("run")
def pipeline_run(
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    data: Path | None = typer.Option(None, "--data", help="Folder of class sub-folders (default: ingest.data_dir)."),
    overrides: list[str] | None = SetOpt,
    tracking_uri: str = typer.Option(
        "", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or the local store under mlflow/)."
    ),
    run_name: str = typer.Option("", "--run-name", help="MLflow run name (default: pipeline-<time>-<id>)."),
) -> None:
    """Run the whole pipeline locally (kfp local runner); print the run id, metrics and gate decision."""
    from cxr import tracking
    from cxr.params import project_root
    from pipelines.local import run_local

    params = _load(params_file, profile, overrides)
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    data_dir = data or (project_root() / params.ingest.data_dir)
    outcome = run_local(params, data_dir, uri, run_name)
    print(
        json.dumps(
            {"run_id": outcome.run_id, "status": outcome.status, "tracking_uri": uri, "metrics": outcome.metrics},
            indent=2,
        )
    )
    if outcome.error or outcome.status == "FAILED" or outcome.gate_passed is None:
        raise CxrError(f"The pipeline failed: {outcome.error or 'see the step logs above'}")
    if outcome.gate_passed:
        print(
            f"gate: PASSED ({outcome.gate_reason}); registered {params.register.model_name} "
            f"version {outcome.registered_version} as @{params.register.alias}"
        )
    else:
        print(f"gate: FAILED ({outcome.gate_reason}); no model registered")


def _cluster_overrides(image_registry: str, image_tag: str, tracking_uri: str, data_dir: str) -> list[str]:
    pairs = {
        "image_registry": image_registry,
        "image_tag": image_tag,
        "tracking_uri": tracking_uri,
        "data_dir": data_dir,
    }
    return [f"cluster.{k}={v}" for k, v in pairs.items() if v]


RegistryOpt = typer.Option("", "--image-registry", help="Registry of the component images (cluster.image_registry).")
TagOpt = typer.Option("", "--image-tag", help="Tag of the component images (cluster.image_tag).")
ClusterUriOpt = typer.Option("", "--tracking-uri", help="MLflow server the cluster run logs to (cluster.tracking_uri).")
DataDirOpt = typer.Option(
    "", "--data-dir", help="Dataset path inside the component image or volume (cluster.data_dir)."
)


@pipeline_app.command("compile")
def pipeline_compile(
    output: Path = typer.Option(Path("build/covid_xray_pipeline.yaml"), "--output", help="Package file to write."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    image_registry: str = RegistryOpt,
    image_tag: str = TagOpt,
    tracking_uri: str = ClusterUriOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Compile the pipeline to a Kubeflow Pipelines package (the training task asks for one NVIDIA GPU)."""
    from cxr import tracking
    from pipelines.compile import compile_pipeline

    extra = _cluster_overrides(image_registry, image_tag, tracking_uri, data_dir)
    params = _load(params_file, profile, list(overrides or []) + extra)
    path = compile_pipeline(output, params, tracking.data_version(), tracking.git_commit())
    print(f"wrote {path}")


@pipeline_app.command("submit")
def pipeline_submit(
    host: str = typer.Option(..., "--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8888."),
    experiment: str = typer.Option("covid-xray", "--experiment", help="KFP experiment name."),
    namespace: str = typer.Option("", "--namespace", help="Kubeflow profile namespace (multi-user installs)."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    image_registry: str = RegistryOpt,
    image_tag: str = TagOpt,
    tracking_uri: str = ClusterUriOpt,
    data_dir: str = DataDirOpt,
) -> None:
    """Compile and submit the pipeline to a Kubeflow Pipelines cluster; prints the KFP run id."""
    import tempfile

    from cxr import tracking
    from pipelines.compile import compile_pipeline, submit_pipeline
    from pipelines.local import new_run_name

    extra = _cluster_overrides(image_registry, image_tag, tracking_uri, data_dir)
    params = _load(params_file, profile, list(overrides or []) + extra)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", params, tracking.data_version(), tracking.git_commit())
        run_name = new_run_name()
        run_id = submit_pipeline(package, host, experiment, run_name, namespace or None)
    print(json.dumps({"kfp_run_id": run_id, "run_name": run_name, "experiment": experiment, "host": host}))


@app.command("predict")
def predict(
    files: list[Path] = typer.Argument(..., help="X-ray files: PNG, JPEG or DICOM."),
    model: str = typer.Option(
        ..., "--model", help="MLflow model URI: runs:/ID/model, models:/NAME@ALIAS, models:/NAME/N."
    ),
    as_json: bool = typer.Option(True, "--json/--no-json", help="One JSON object per line (default)."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store holding the model."),
) -> None:
    """Predict the positive-class probability of each file."""
    from cxr import tracking
    from cxr.predict import load_classifier, predict_files

    tracking.configure(tracking.resolve_tracking_uri(None, tracking_uri), "covid-xray")
    classifier = load_classifier(model)
    failed = False
    for result in predict_files(classifier, files):
        failed = failed or "error" in result
        if as_json:
            print(json.dumps(result))
        elif "error" in result:
            print(f"{result['file']}\terror\t{result['error']}")
        else:
            print(f"{result['file']}\t{result['label']}\t{result['probability']:.4f}")
    if failed:
        raise typer.Exit(1)


@app.command("serve")
def serve(
    model: str = typer.Option(
        "",
        "--model",
        help="MLflow model URI (default: models:/covid-xray-vgg16@champion, else @challenger with a warning).",
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    params_file: Path | None = ParamsOpt,
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store holding the model."),
) -> None:
    """Start the web app: upload page at /, JSON API at /api/predict, /healthz, /readyz, /openapi.json."""
    from cxr import tracking
    from cxr.serving.app import serve as run_server

    params = _load(params_file, "cpu", ())
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logging.getLogger("cxr").setLevel(logging.WARNING)
    run_server(model, host, port, params.serve.max_upload_mb)


@app.command("retrain")
def retrain(
    force: bool = typer.Option(False, "--force", help="Retrain even if the newest version used this data."),
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI)."),
) -> None:
    """Run the pipeline and the gate when data.dvc's data version differs from the newest registered version's."""
    from cxr import tracking
    from cxr.retrain import decide_retrain, newest_version

    params = _load(params_file, profile, overrides)
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    tracking.configure(uri, params.mlflow.experiment)
    decision = decide_retrain(tracking.data_version(), newest_version(params.register.model_name), force)
    print(decision.message)
    if decision.run:
        pipeline_run(
            profile=profile, params_file=params_file, data=None, overrides=overrides, tracking_uri=uri, run_name=""
        )


ModelOpt = typer.Option("covid-xray-vgg16", "--name", help="Registered model name.")
UriOpt = typer.Option("", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or mlflow/).")


def _registry(tracking_uri: str) -> None:
    import mlflow

    from cxr import tracking

    uri = tracking.resolve_tracking_uri(None, tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def _who(by: str) -> str:
    import getpass

    return by or os.environ.get("USER") or getpass.getuser()


@registry_app.command("list")
def registry_list(name: str = ModelOpt, as_json: bool = typer.Option(False, "--json"), tracking_uri: str = UriOpt):
    """Every version: aliases, validation F1 and accuracy, data version, commit, time, who registered it."""
    from cxr.release import format_table, list_versions

    _registry(tracking_uri)
    rows = list_versions(name)
    print(json.dumps(rows, indent=2) if as_json else format_table(rows))


@registry_app.command("show")
def registry_show(version: str, name: str = ModelOpt, tracking_uri: str = UriOpt):
    """Everything about one version (number or alias): tags, gate figures, run link, release events."""
    from cxr.release import show_version

    _registry(tracking_uri)
    print(json.dumps(show_version(name, version), indent=2))


@registry_app.command("compare")
def registry_compare(
    a: str,
    b: str,
    name: str = ModelOpt,
    as_json: bool = typer.Option(False, "--json"),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder for re-scoring (default ingest.data_dir)."),
    samples: int = typer.Option(2000, "--samples", help="Bootstrap resamples for the ΔF1 interval."),
    tracking_uri: str = UriOpt,
):
    """Two versions (numbers or aliases) on the same validation split; ΔF1 with a paired bootstrap 95% CI."""
    from cxr.compare import compare, format_comparison
    from cxr.params import load_params, project_root

    _registry(tracking_uri)
    result = compare(name, a, b, data or project_root() / load_params().ingest.data_dir, samples)
    print(json.dumps(result, indent=2) if as_json else format_comparison(result))


@registry_app.command("promote")
def registry_promote(
    version: str,
    reason: str = typer.Option(..., "--reason", help="Why (kept in the history)."),
    force: bool = typer.Option(False, "--force", help="Promote a version that did not pass the gate."),
    by: str = typer.Option("", "--by", help="Who (default $USER)."),
    name: str = ModelOpt,
    tracking_uri: str = UriOpt,
):
    """Move @champion to VERSION; the old champion becomes @previous-champion."""
    from cxr.release import promote

    _registry(tracking_uri)
    event = promote(name, version, reason, _who(by), force)
    forced = " (FORCED past the gate)" if event["forced"] else ""
    print(f"@champion -> v{event['version']} (was v{event['from_version'] or '-'}){forced}: {event['reason']}")


@registry_app.command("rollback")
def registry_rollback(
    reason: str = typer.Option(..., "--reason", help="Why (kept in the history)."),
    by: str = typer.Option("", "--by", help="Who (default $USER)."),
    name: str = ModelOpt,
    tracking_uri: str = UriOpt,
):
    """Put @champion back on @previous-champion."""
    from cxr.release import rollback

    _registry(tracking_uri)
    event = rollback(name, reason, _who(by))
    print(f"@champion -> v{event['version']} (rolled back from v{event['from_version'] or '-'}): {event['reason']}")


@registry_app.command("history")
def registry_history(name: str = ModelOpt, as_json: bool = typer.Option(False, "--json"), tracking_uri: str = UriOpt):
    """Every promotion and rollback, oldest first, read back from the registry."""
    from cxr.release import history

    _registry(tracking_uri)
    events = history(name)
    if as_json:
        print(json.dumps(events, indent=2))
        return
    for e in events:
        forced = " FORCED" if e.get("forced") else ""
        print(
            f"{e['at']}  {e['action']:<8} v{e['from_version'] or '-'} -> v{e['version']}{forced}  by {e['by']}: "
            f"{e['reason']}"
        )
    if not events:
        print("(no promotions yet)")


@registry_app.command("card")
def registry_card(version: str, name: str = ModelOpt, tracking_uri: str = UriOpt):
    """Print the Markdown model card of a version."""
    from cxr.release import model_card

    _registry(tracking_uri)
    print(model_card(name, version))


ARTIFACTS = Path("artifacts")


def _stage_context(params_file, profile):
    """Params and the MLflow run the DVC stages share (opened by `cxr stage ingest`)."""
    from cxr.steps import RunContext

    params = _load(params_file, profile, ())
    state = ARTIFACTS / "run.json"
    if not state.is_file():
        raise CxrError(f"{state} is missing; run `dvc repro` (or `cxr stage ingest`) from the start.")
    run = json.loads(state.read_text())
    return params, RunContext(run["tracking_uri"], run["run_id"])


@stage_app.command("ingest")
def stage_ingest(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Ingest ingest.data_dir into artifacts/dataset; opens the MLflow run for the stages."""
    from cxr import tracking
    from cxr.steps import RunContext, ingest_step

    params = _load(params_file, profile, ())
    uri = tracking.resolve_tracking_uri(params)
    tags = {"data_version": tracking.data_version(), "git_commit": tracking.git_commit(), "orchestrator": "dvc"}
    run_id = tracking.start_pipeline_run(params, uri, "", tags)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "run.json").write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    print(ingest_step(RunContext(uri, run_id), params.ingest.data_dir, str(ARTIFACTS / "dataset"), params))


@stage_app.command("validate")
def stage_validate(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Validate artifacts/dataset; data docs in artifacts/validation."""
    from cxr.steps import validate_step

    params, ctx = _stage_context(params_file, profile)
    validate_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "validation"), params)


@stage_app.command("augment")
def stage_augment(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Write the augmentation spec and preview to artifacts/augmentation."""
    from cxr.steps import augment_step

    params, ctx = _stage_context(params_file, profile)
    augment_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "augmentation"), params)


@stage_app.command("train")
def stage_train(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Train into artifacts/model (and log the MLflow model)."""
    from cxr.steps import train_step

    params, ctx = _stage_context(params_file, profile)
    model_uri = train_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "model"), params)
    (ARTIFACTS / "model" / "mlflow_model_uri.txt").write_text(model_uri)


@stage_app.command("evaluate")
def stage_evaluate(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Evaluate artifacts/model; metrics in artifacts/evaluation/metrics.json."""
    from cxr.steps import evaluate_step

    params, ctx = _stage_context(params_file, profile)
    evaluate_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "model"), str(ARTIFACTS / "evaluation"), params)


@stage_app.command("register")
def stage_register(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Gate on validation F1; register when it passes. Writes artifacts/gate.json."""
    from cxr import tracking
    from cxr.steps import gate_step, register_step, reject_step

    params, ctx = _stage_context(params_file, profile)
    metrics = json.loads((ARTIFACTS / "evaluation" / "metrics.json").read_text())
    decision = gate_step(ctx, str(ARTIFACTS / "dataset"), metrics["val_f1"], params)
    out = json.loads(decision.to_json())
    if decision.passed:
        model_uri = (ARTIFACTS / "model" / "mlflow_model_uri.txt").read_text().strip()
        tags = {"data_version": tracking.data_version(), "git_commit": tracking.git_commit()}
        out["registered_version"] = register_step(ctx, model_uri, decision.to_json(), params, tags)
    else:
        reject_step(ctx, decision.to_json())
    (ARTIFACTS / "gate.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


def main() -> None:
    _quiet()
    try:
        app()
    except CxrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
