"""The `cxr` command: a thin shell over the library and the pipeline package."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt, ProfileOpt, SetOpt
from cxr_cli.options import load as _load
from cxr_cli.registry import registry_app
from cxr_cli.stages import stage_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="COVID-19 chest X-ray classifier (VGG16).")
pipeline_app = typer.Typer(no_args_is_help=True, help="Run, compile or submit the Kubeflow pipeline.")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(stage_app, name="stage")
app.add_typer(registry_app, name="registry")


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


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
    runner: str = typer.Option(
        "subprocess", "--runner", help="subprocess: steps as subprocesses; docker: steps in their images (make images)."
    ),
    gpu: bool = typer.Option(False, "--gpu", help="With --runner docker: train in the GPU image with the GPUs."),
) -> None:
    """Run the whole pipeline locally (kfp local runner); print the run id, metrics and gate decision."""
    from cxr import tracking
    from cxr.params import project_root
    from pipelines.local import run_local

    params = _load(params_file, profile, overrides)
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    data_dir = data or (project_root() / params.ingest.data_dir)
    outcome = run_local(params, data_dir, uri, run_name, runner=runner, gpu=gpu)
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
        label = "INCONCLUSIVE" if outcome.gate_outcome == "inconclusive" else "FAILED"
        print(f"gate: {label} ({outcome.gate_reason}); no model registered")
        if outcome.gate_advice:
            print(f"next: {outcome.gate_advice}")


def _compile(output: Path, params_file, profile: str, overrides, cluster: tuple[str, str, str, str]) -> Path:
    """Params (with the command's `cluster.*` options as overrides) -> a compiled package at `output`."""
    from cxr import tracking
    from pipelines.compile import compile_pipeline

    keys = ("image_registry", "image_tag", "tracking_uri", "data_dir")
    extra = [f"cluster.{k}={v}" for k, v in zip(keys, cluster, strict=True) if v]
    params = _load(params_file, profile, list(overrides or []) + extra)
    return compile_pipeline(output, params, tracking.data_version(), tracking.git_commit())


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
    cluster = (image_registry, image_tag, tracking_uri, data_dir)
    print(f"wrote {_compile(output, params_file, profile, overrides, cluster)}")


@pipeline_app.command("submit")
def pipeline_submit(
    host: str = typer.Option(..., "--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8888."),
    experiment: str = typer.Option("", "--experiment", help="KFP experiment name (default: mlflow.experiment)."),
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

    from pipelines.compile import submit_pipeline
    from pipelines.local import new_run_name

    cluster = (image_registry, image_tag, tracking_uri, data_dir)
    experiment = experiment or _load(params_file, profile, overrides).mlflow.experiment
    with tempfile.TemporaryDirectory() as tmp:
        package = _compile(Path(tmp) / "pipeline.yaml", params_file, profile, overrides, cluster)
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

    tracking.configure(tracking.resolve_tracking_uri(None, tracking_uri), _load(None, "cpu", ()).mlflow.experiment)
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
        help="MLflow model URI (default: models:/<register.model_name>@champion, else @challenger with a warning).",
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
    run_server(model, host, port, params.serve.max_upload_mb, params.register.model_name)


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
            profile=profile,
            params_file=params_file,
            data=None,
            overrides=overrides,
            tracking_uri=uri,
            run_name="",
            runner="subprocess",
            gpu=False,
        )


def main() -> None:
    _quiet()
    try:
        app()
    except CxrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
