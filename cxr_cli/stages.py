"""`cxr stage …`: the pipeline steps one at a time into artifacts/ (what dvc.yaml runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt, ProfileOpt
from cxr_cli.options import load as _load

stage_app = typer.Typer(no_args_is_help=True, help="Pipeline steps one at a time (what dvc.yaml runs).")

ARTIFACTS = Path("artifacts")


RUN_FILE = ARTIFACTS / "mlflow-run.json"  # the current MLflow parent run; not a DVC output


def _stage_context(params_file, profile):
    """Params and the MLflow parent run the DVC stages share (opened by `cxr stage ingest`).

    When DVC reruns only later stages (say `train.epochs` changed), the run they would log into was
    closed by the last `register`; they then open a new parent run that carries today's params, the
    earlier stages' tags and metrics and a `continued_from` tag, so every run is complete.
    """
    from cxr.steps.context import RunContext
    from cxr.tracking import runs as tracking

    params = _load(params_file, profile, ())
    if not RUN_FILE.is_file():
        raise CxrError(f"{RUN_FILE} is missing; run `dvc repro` (or `cxr stage ingest`) from the start.")
    run = json.loads(RUN_FILE.read_text())
    if tracking.run_status(run["tracking_uri"], run["run_id"]) != "RUNNING":
        run["run_id"] = tracking.continue_pipeline_run(params, run["tracking_uri"], run["run_id"])
        RUN_FILE.write_text(json.dumps(run))
    return params, RunContext(run["tracking_uri"], run["run_id"])


def write_plot_data(report: dict, out_dir: Path) -> None:
    """DVC plot data for `dvc plots show/diff`: the ROC points and one actual/predicted row per image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    roc = report["roc"]
    points = [{"fpr": f, "tpr": t} for f, t in zip(roc["fpr"], roc["tpr"], strict=True)]
    (out_dir / "val_roc.json").write_text(json.dumps(points, indent=1))
    threshold, positive, negative = report["metrics"]["threshold"], report["positive_class"], report["negative_class"]
    rows = [
        {"actual": p["label"], "predicted": positive if p["probability"] >= threshold else negative}
        for p in report["predictions"]
    ]
    (out_dir / "val_confusion.json").write_text(json.dumps(rows, indent=1))


@stage_app.command("ingest")
def stage_ingest(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Ingest ingest.data_dir into artifacts/dataset; opens the MLflow run for the stages."""
    from cxr.steps.context import open_pipeline_run
    from cxr.steps.ingest import ingest_step
    from cxr.tracking import runs as tracking

    params = _load(params_file, profile, ())
    uri = tracking.resolve_tracking_uri(params)
    ctx, data_dir, version = open_pipeline_run(
        params, uri, "", params.ingest.data_dir, tracking.data_version(), tracking.git_commit(), "dvc"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    RUN_FILE.write_text(json.dumps({"run_id": ctx.parent_run_id, "tracking_uri": uri, "data_version": version}))
    print(ingest_step(ctx, data_dir, str(ARTIFACTS / "dataset"), params))


@stage_app.command("validate")
def stage_validate(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Validate artifacts/dataset; data docs in artifacts/validation."""
    from cxr.steps.validate import validate_step

    params, ctx = _stage_context(params_file, profile)
    validate_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "validation"), params)


@stage_app.command("augment")
def stage_augment(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Write the augmentation spec and preview to artifacts/augmentation."""
    from cxr.steps.augment import augment_step

    params, ctx = _stage_context(params_file, profile)
    augment_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "augmentation"), params)


@stage_app.command("train")
def stage_train(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Train into artifacts/model (and log the MLflow model)."""
    from cxr.steps.train import train_step

    params, ctx = _stage_context(params_file, profile)
    model_uri = train_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "model"), params)
    (ARTIFACTS / "model" / "mlflow_model_uri.txt").write_text(model_uri)


@stage_app.command("evaluate")
def stage_evaluate(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Evaluate artifacts/model into artifacts/evaluation; the metrics also in artifacts/metrics.json."""
    from cxr.steps.evaluate import evaluate_step

    params, ctx = _stage_context(params_file, profile)
    evaluate_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "model"), str(ARTIFACTS / "evaluation"), params)
    shutil.copyfile(ARTIFACTS / "evaluation" / "metrics.json", ARTIFACTS / "metrics.json")
    write_plot_data(json.loads((ARTIFACTS / "evaluation" / "val_report.json").read_text()), ARTIFACTS / "plots")


@stage_app.command("register")
def stage_register(profile: str = ProfileOpt, params_file: Path | None = ParamsOpt) -> None:
    """Gate on validation F1; register when it passes. Writes artifacts/gate.json."""
    from cxr.steps.gate import gate_step
    from cxr.steps.register import register_step, reject_step
    from cxr.tracking import runs as tracking
    from cxr.tracking.record import Lineage

    params, ctx = _stage_context(params_file, profile)
    decision = gate_step(ctx, str(ARTIFACTS / "dataset"), str(ARTIFACTS / "evaluation"), params)
    out = json.loads(decision.to_json())
    if decision.passed:
        model_uri = (ARTIFACTS / "model" / "mlflow_model_uri.txt").read_text().strip()
        read = json.loads(RUN_FILE.read_text()).get("data_version", "unversioned")
        lineage = Lineage(data_version=read, git_commit=tracking.git_commit())
        out["registered_version"] = register_step(ctx, model_uri, decision, params, lineage)
    else:
        reject_step(ctx, decision)
    (ARTIFACTS / "gate.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
