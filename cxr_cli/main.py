"""The `cxr` command: a thin shell over the library and the pipeline package.

Each command imports the modules it runs inside its own function, in every module of this package:
measured on 2 cores, `cxr --help` takes 0.4 s this way, against 11 s to import the core's inference
and step modules (TensorFlow, MLflow) that most commands need. The core (`cxr/`) imports at module level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.data import data_app
from cxr_cli.monitor import monitor_app
from cxr_cli.options import ParamsOpt, ProfileOpt, ProtocolOpt, SetOpt, SiteOpt
from cxr_cli.options import load as _load
from cxr_cli.pipeline import HostOpt, JsonOpt, NamespaceOpt, PollOpt, TimeoutOpt, VerboseOpt, pipeline_app
from cxr_cli.registry import registry_app
from cxr_cli.stages import stage_app
from cxr_cli.team import team_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="COVID-19 chest X-ray classifier (VGG16).")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(stage_app, name="stage")
app.add_typer(registry_app, name="registry")
app.add_typer(data_app, name="data")
app.add_typer(team_app, name="team")
app.add_typer(monitor_app, name="monitor")


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # a command prints its answer, not MLflow's download progress bar for each model file it reads
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command("predict")
def predict(
    files: list[Path] = typer.Argument(..., help="X-ray files: PNG, JPEG or DICOM."),
    model: str = typer.Option(
        ..., "--model", help="MLflow model URI: runs:/ID/model, models:/NAME@ALIAS, models:/NAME/N."
    ),
    as_json: bool = typer.Option(True, "--json/--no-json", help="One JSON object per line (default)."),
    allow_ood: bool = typer.Option(
        False,
        "--allow-ood",
        help="Score images the input gate refuses (not frontal chest X-rays) anyway; the warning stays in the output.",
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store holding the model."),
) -> None:
    """Predict the positive-class probability of each file; refuse (with the reason) what is not a
    frontal chest X-ray. Exit 1 only when a file cannot be read; a refusal is a row, not a failure."""
    from cxr.inference.classifier import load_classifier
    from cxr.inference.scoring import predict_files
    from cxr.tracking import runs as tracking

    tracking.configure(tracking.resolve_tracking_uri(None, tracking_uri), _load(None, "cpu", ()).mlflow.experiment)
    classifier = load_classifier(model)
    failed = False
    for result in predict_files(classifier, files, allow_ood):
        failed = failed or "error" in result
        if as_json:
            print(json.dumps(result))
        elif "error" in result:
            print(f"{result['file']}\terror\t{result['error']}")
        elif result.get("probability") is None:
            print(f"{result['file']}\trefused\t{result['reason']}")
        else:
            warning = f"\twarning: {result['warning']}" if result.get("warning") else ""
            print(f"{result['file']}\t{result['label']}\t{result['probability']:.4f}{warning}")
    if failed:
        raise typer.Exit(1)


@app.command("serve")
def serve(
    model: str = typer.Option(
        "",
        "--model",
        help="MLflow model URI (default: models:/<register.model_name>@champion, else @challenger with a warning).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Beyond loopback: with --htpasswd or --trusted-user-header."),
    port: int = typer.Option(8080, "--port"),
    htpasswd: Path | None = typer.Option(
        None, "--htpasswd", envvar="CXR_SERVE_HTPASSWD", help="Users allowed in: an htpasswd file of bcrypt hashes."
    ),
    user_header: str = typer.Option(
        "",
        "--trusted-user-header",
        envvar="CXR_SERVE_TRUSTED_USER_HEADER",
        help="Header an authenticating proxy sets to the signed-in user (e.g. X-Auth-Request-User).",
    ),
    insecure_open: bool = typer.Option(
        False, "--insecure-open", help="Listen beyond loopback without authentication, on purpose (logged)."
    ),
    params_file: Path | None = ParamsOpt,
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store holding the model."),
    records_url: str = typer.Option(
        "",
        "--records-url",
        envvar="CXR_RECORDS_URL",
        help="Where prediction numbers and findings are kept (SQLAlchemy URL; default serve.records_url; off: none).",
    ),
    site: str = SiteOpt,
    protocol: str = ProtocolOpt,
) -> None:
    """Start the web app: upload page at /, JSON API at /api/predict and /api/feedback, /healthz, /readyz,
    /metrics, /openapi.json. With --protocol v2: the model in MLServer, /v2/models/<name>/infer."""
    from cxr.serving.app import serve as run_server
    from cxr.serving.auth import configure_auth
    from cxr.tracking import runs as tracking

    _check_protocol(protocol, bool(htpasswd or user_header))
    auth = configure_auth(host, htpasswd, user_header, insecure_open)
    params = _load(params_file, "cpu", ())
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    logging.getLogger("cxr").setLevel(logging.WARNING)
    logging.getLogger("cxr.serve").setLevel(logging.INFO)  # what it serves and where: INFO, not a warning
    if protocol == "v2":
        _serve_v2(model, host, port, params, uri)
    if not model:  # said here, in one sentence, before the server's worker starts
        _say_if_nothing_is_released(params)
    from cxr.serving.records import resolve_records_url

    records = resolve_records_url(records_url or params.serve.records_url)
    run_server(model, host, port, params.serve, params.register.model_name, auth, records, site)


def _check_protocol(protocol: str, sign_in: bool) -> None:
    if protocol not in ("web", "v2"):
        raise CxrError(f"--protocol {protocol} is not offered; use web (the web app) or v2 (Open Inference Protocol).")
    if protocol == "v2" and sign_in:
        raise CxrError(
            "MLServer has no sign-in of its own: serve --protocol v2 on loopback, or behind the cluster's gateway."
        )


def _serve_v2(model: str, host: str, port: int, params, tracking_uri: str) -> None:
    """MLServer on the model (--model, else the released version), in place of this process."""
    from cxr.serving.open_inference import released_model, serve_v2

    if not model:
        model, warning = released_model(params.register.model_name)
        if warning:
            print(warning, file=sys.stderr)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # MLServer resolves models:/ URIs in the store
    print(
        f"Serving {model} with MLServer: http://{host}:{port}/v2/models/{params.register.model_name}", file=sys.stderr
    )
    serve_v2(model, params.register.model_name, host, port, params.serve)


def _say_if_nothing_is_released(params) -> None:
    from cxr.serving.model_store import resolve_default

    try:
        resolve_default(params.register.model_name)
    except CxrError as exc:
        print(
            f"{exc} Starting anyway: /readyz answers 503 and the page says so until a version is registered, "
            f"then the app serves it within serve.reload_s ({params.serve.reload_s:g} s).",
            file=sys.stderr,
        )


def _retrain_decision(params, uri: str, force: bool):
    """(whether and why to retrain, its summary for --json): the training signature now against the newest
    registered version's."""
    from cxr.release.retrain import decide_retrain, logged_params, newest_version
    from cxr.tracking import runs as tracking
    from cxr.tracking.signature import TrainingSignature, changed_params

    tracking.configure(uri, params.mlflow.experiment)
    newest = newest_version(params.register.model_name)
    signature = TrainingSignature.of(tracking.data_version(), params)
    decision = decide_retrain(signature, newest, force, changed_params(params, logged_params(newest)))
    summary = {
        "ran": decision.run,
        "message": decision.message,
        "data_version": decision.data_version,
        "changed": list(decision.changed),
        "signature": signature.tags(),
    }
    return decision, summary


@app.command("retrain")
def retrain(
    force: bool = typer.Option(False, "--force", help="Retrain even if the newest version has the same signature."),
    on: str = typer.Option("local", "--on", help="local: kfp's local runner here; kfp: submit to --host and wait."),
    host: str = HostOpt,
    namespace: str = NamespaceOpt,
    timeout: int = TimeoutOpt,
    poll_interval: float = PollOpt,
    as_json: bool = JsonOpt,
    verbose: bool = VerboseOpt,
    profile: str = ProfileOpt,
    params_file: Path | None = ParamsOpt,
    overrides: list[str] | None = SetOpt,
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI)."),
) -> None:
    """Run the pipeline and the gate when the training signature (data.dvc's data version, the parameters that
    shape the model, the training code) differs from the newest registered version's; says which part changed.
    Exit 0 registered or nothing to do, 3 gate refused, 2 failed."""
    from cxr.params import project_root
    from cxr.tracking import runs as tracking
    from cxr_cli.pipeline import _fail_json, _finish, _run_pipeline, _submit_and_wait
    from cxr_cli.progress import terminal
    from cxr_cli.result import dumps, skipped_result

    if on not in ("local", "kfp"):
        raise CxrError(f"Unknown --on '{on}'; use local or kfp.")
    params = _load(params_file, profile, overrides)
    uri = tracking.resolve_tracking_uri(params, tracking_uri)
    out = terminal(to_stderr=as_json)
    try:
        decision, summary = _retrain_decision(params, uri, force)
    except CxrError as exc:
        _fail_json(exc, uri, as_json)
        raise
    out.write(decision.message + "\n")
    if not decision.run:
        if as_json:
            print(dumps(skipped_result(uri, retrain=summary)))
        return
    try:
        if on == "kfp":
            result = _submit_and_wait(params, host, "", namespace, timeout, out, poll_interval)
        else:
            data_dir = project_root() / params.ingest.data_dir
            result = _run_pipeline(params, data_dir, uri, "", "subprocess", False, verbose, out)
    except CxrError as exc:
        _fail_json(exc, uri, as_json, retrain=summary)
        raise
    result["retrain"] = summary
    _finish(result, out, as_json)


def main() -> None:
    _quiet()
    try:
        from cxr.tracking.credentials import credentials_from_files

        credentials_from_files()
        app()
    except CxrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # an MLflow server refusing the request is the user's to fix, not a crash
        from cxr.tracking.runs import refusal

        if not refusal(exc):
            raise
        print(f"error: {refusal(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
