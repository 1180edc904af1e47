"""`cxr monitor …`: how the served model does in use, from what the web app recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt, RecordsOpt
from cxr_cli.options import load as _load

monitor_app = typer.Typer(
    no_args_is_help=True,
    help="The served model in use: drift of its inputs, and performance from radiologists' findings.",
)

SinceOpt = typer.Option("", "--since", help="Only predictions from this long ago on: 30m, 24h, 7d.")
DRIFT_EXIT = 4


def _records(records_url: str, params):
    """The web app's records store (--records-url, else serve.records_url) and the URL it was opened at."""
    from cxr.serving.records import existing_records, resolve_records_url

    url = resolve_records_url(records_url or params.serve.records_url)
    if not url:
        raise CxrError("serve.records_url is off: the web app keeps no records; nothing to report.")
    store = existing_records(url)
    if store is None:
        raise CxrError(f"No records at {url}: the web app has answered nothing there yet (or pass --records-url).")
    return store, url


@monitor_app.command("performance")
def monitor_performance(
    version: str = typer.Option("", "--version", help="One model version (default: every version on record)."),
    since: str = SinceOpt,
    records_url: str = RecordsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: version -> counts and measures."),
    params_file: Path | None = ParamsOpt,
) -> None:
    """Sensitivity, specificity, PPV and NPV with Wilson 95% intervals per model version, from the findings
    radiologists recorded against the web app's predictions (unsure findings and refusals counted apart)."""
    from cxr.evaluation.live import format_performance, performance_by_version
    from cxr.serving.records import since_time

    store, _ = _records(records_url, _load(params_file, "cpu", ()))
    result = performance_by_version(store.rows(since_time(since), version))
    print(json.dumps(result, indent=2) if as_json else format_performance(result))


@monitor_app.command("drift")
def monitor_drift(
    files: list[Path] = typer.Argument(None, help="Images to test (PNG, JPEG, DICOM), with --model."),
    model: str = typer.Option("", "--model", help="The model whose training split is the reference (MLflow URI)."),
    server: str = typer.Option(
        "", "--server", help="A running web app: test what it served (sign in with $CXR_SERVER_USER/_PASSWORD)."
    ),
    records: bool = typer.Option(False, "--records", help="Test what the web app recorded in its records store."),
    records_url: str = RecordsOpt,
    since: str = SinceOpt,
    version: str = typer.Option("", "--version", help="The served model version to test (default: the newest)."),
    name: str = typer.Option("", "--name", help="Registered model name (default register.model_name)."),
    report: Path = typer.Option(Path("drift-report.html"), "--report", help="Where the HTML report goes."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as one JSON object."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store holding the model."),
    params_file: Path | None = ParamsOpt,
) -> None:
    """Test a batch of images against the model's training split (energy-distance test on the input gate's
    features, projected; docs/operations.md). Prints a one-line verdict, writes an HTML report and logs it
    under the model's MLflow run. Exit 0: no drift; 4: drift; 2: no verdict (an error)."""
    from cxr.safety.drift import detect
    from cxr.safety.drift_report import write_report
    from cxr.serving.records import since_time
    from cxr.steps import drift_check
    from cxr.tracking import runs as tracking

    params = _load(params_file, "cpu", ())
    sources = [bool(files) and bool(model), bool(server), records]
    if sum(sources) != 1 or (files and not model) or (model and not files):
        raise CxrError(
            "Say what to test, one of: --model URI FILE... (a batch of images), --server URL (what a web app "
            "served) or --records (its records store)."
        )
    tracking.configure(tracking.resolve_tracking_uri(params, tracking_uri), params.mlflow.experiment)
    mp = params.monitor
    if files:
        current, reference = drift_check.project_files(model, list(files))
        model_uri, source, served = model, f"{len(files)} files", ""
    else:
        if server:
            rows, source = drift_check.server_rows(server, since, version), f"what {server} served"
        else:
            store, url = _records(records_url, params)
            rows, source = store.rows(since_time(since), version), f"the records at {url.split('@')[-1]}"
        served, current = drift_check.choose_rows(rows, version, mp.drift_max_rows)
        model_uri = f"models:/{name or params.register.model_name}/{served}"
        reference = drift_check.reference_for(model_uri)
        source += f" since {since}" if since else ""
    verdict = detect(reference, current, mp.drift_alpha, mp.drift_min_n)
    verdict.model_version, verdict.report = served, str(report)
    write_report(verdict, reference, current, report, source)
    warning = drift_check.log_report(model_uri, verdict, report)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(verdict.to_dict()) if as_json else f"{verdict.line()}; report: {report}")
    if verdict.drift:
        raise typer.Exit(DRIFT_EXIT)
