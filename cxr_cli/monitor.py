"""`cxr monitor …`: how the served model does in use, from what the web app recorded."""

from __future__ import annotations

import json
import re
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
    site: str | None = typer.Option(
        None, "--site", help="With --records: only the films taken at this site ('' : unnamed); the verdict is kept."
    ),
    each_site: bool = typer.Option(False, "--each-site", help="With --records: one test per site, each kept."),
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
    under the model's MLflow run. With --site or --each-site the records store keeps each site's verdict: the
    web app says "not yet validated" at a site until one finds no drift. Exit 0: no drift; 4: drift; 2: no
    verdict (an error)."""
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
    if (site is not None or each_site) and not records:
        raise CxrError("--site and --each-site test the records store, where the verdicts are kept: add --records.")
    tracking.configure(tracking.resolve_tracking_uri(params, tracking_uri), params.mlflow.experiment)
    test = _DriftTest(params.monitor, name or params.register.model_name, report, as_json)
    if files:
        current, reference = drift_check.project_files(model, list(files))
        drifted = test.run(reference, current, model, "", f"{len(files)} files", report).drift
    elif server:
        rows, source = drift_check.server_rows(server, since, version), f"what {server} served"
        drifted = test.rows(rows, version, source + (f" since {since}" if since else "")).drift
    else:
        store, url = _records(records_url, params)
        rows, source = store.rows(since_time(since), version), f"the records at {url.split('@')[-1]}"
        source += f" since {since}" if since else ""
        if site is None and not each_site:
            drifted = test.rows(rows, version, source).drift
        else:
            drifted = test.sites(store, rows, version, source, None if each_site else site)
    if drifted:
        raise typer.Exit(DRIFT_EXIT)


class _DriftTest:
    """One drift test: the verdict, its HTML report (logged under the model's run) and the printed line."""

    def __init__(self, monitor, name: str, report: Path, as_json: bool):
        self.monitor, self.name, self.report, self.as_json = monitor, name, report, as_json

    def run(self, reference, current, model_uri: str, served: str, source: str, report: Path, site=None):
        from cxr.safety.drift import detect
        from cxr.safety.drift_report import write_report
        from cxr.steps import drift_check

        verdict = detect(reference, current, self.monitor.drift_alpha, self.monitor.drift_min_n)
        verdict.model_version, verdict.report = served, str(report)
        write_report(verdict, reference, current, report, source)
        warning = drift_check.log_report(model_uri, verdict, report)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        if self.as_json:
            print(json.dumps(({} if site is None else {"site": site}) | verdict.to_dict()))
        else:
            where = "" if site is None else f"site {site or '(unnamed)'}: "
            print(f"{where}{verdict.line()}; report: {report}")
        return verdict

    def rows(self, rows: list[dict], version: str, source: str, report: Path | None = None, site=None):
        """Test recorded rows: the newest of `version` (default: the newest record's version)."""
        from cxr.steps import drift_check

        served, current = drift_check.choose_rows(rows, version, self.monitor.drift_max_rows)
        model_uri = f"models:/{self.name}/{served}"
        reference = drift_check.reference_for(model_uri)
        return self.run(reference, current, model_uri, served, source, report or self.report, site)

    def sites(self, store, rows: list[dict], version: str, source: str, only: str | None) -> bool:
        """One test per site (or of site `only`), each verdict kept in the store; whether any found drift.
        A site with too few films gets no verdict (said, and skipped) unless it is the only one tested."""
        from cxr.safety.dicom_scope import site_name
        from cxr.steps import drift_check

        version = drift_check.choose_rows(rows, version, self.monitor.drift_max_rows)[0]
        sites = [site_name(only)] if only is not None else sorted({r.get("site") or "" for r in rows})
        drifted, verdicts = False, 0
        for site in sites:
            mine = [r for r in rows if (r.get("site") or "") == site]
            report = self.report if only is not None else self.report.with_stem(f"{self.report.stem}-{_slug(site)}")
            try:
                verdict = self.rows(mine, version, f"{source}, site {site or '(unnamed)'}", report, site)
            except CxrError as exc:
                if only is not None:
                    raise
                print(f"site {site or '(unnamed)'}: no verdict: {exc}", file=sys.stderr)
                continue
            store.record_site_check(site, version, verdict.n, verdict.p_value, verdict.drift)
            drifted, verdicts = drifted or verdict.drift, verdicts + 1
        if not verdicts:
            raise CxrError("No site has enough recorded films for a verdict (monitor.drift_min_n); wait for traffic.")
        return drifted


def _slug(site: str) -> str:
    """A site's name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", site).strip("-").lower() or "unnamed"
