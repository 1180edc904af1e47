"""`cxr monitor …`: how the served model does in use, from what the web app recorded."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import typer

from cxr.errors import CxrError
from cxr_cli.options import ParamsOpt
from cxr_cli.options import load as _load

monitor_app = typer.Typer(
    no_args_is_help=True, help="The served model in use: performance from radiologists' findings."
)

RecordsOpt = typer.Option(
    "", "--records-url", envvar="CXR_RECORDS_URL", help="The web app's records store (default serve.records_url)."
)


def since_time(text: str) -> datetime.datetime | None:
    """'24h', '7d', '30m' -> that long ago (UTC); '' -> None."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not match:
        raise CxrError(f"--since '{text}' is not a duration; give e.g. 30m, 24h or 7d.")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(**{unit: int(match.group(1))})


@monitor_app.command("performance")
def monitor_performance(
    version: str = typer.Option("", "--version", help="One model version (default: every version on record)."),
    since: str = typer.Option("", "--since", help="Only predictions from this long ago on: 30m, 24h, 7d."),
    records_url: str = RecordsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: version -> counts and measures."),
    params_file: Path | None = ParamsOpt,
) -> None:
    """Sensitivity, specificity, PPV and NPV with Wilson 95% intervals per model version, from the findings
    radiologists recorded against the web app's predictions (unsure findings and refusals counted apart)."""
    from cxr.evaluation.live import format_performance, performance_by_version
    from cxr.serving.records import existing_records, resolve_records_url

    url = resolve_records_url(records_url or _load(params_file, "cpu", ()).serve.records_url)
    if not url:
        raise CxrError("serve.records_url is off: the web app keeps no records; nothing to report.")
    store = existing_records(url)
    if store is None:
        raise CxrError(f"No records at {url}: the web app has answered nothing there yet (or pass --records-url).")
    result = performance_by_version(store.rows(since_time(since), version))
    print(json.dumps(result, indent=2) if as_json else format_performance(result))
