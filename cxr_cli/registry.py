"""`cxr registry …`: the release manager's commands (thin shell over cxr.release.promotion and cxr.release.compare)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from cxr_cli.options import RecordsOpt

registry_app = typer.Typer(
    no_args_is_help=True,
    help="The release manager's registry: list, compare, promote, roll back, history, model cards.",
)

ModelOpt = typer.Option("", "--name", help="Registered model name (default: register.model_name in params.yaml).")
UriOpt = typer.Option("", "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or mlflow/).")


def _registry(tracking_uri: str, name: str) -> str:
    """Point MLflow at the store; returns the registered model's name (register.model_name by default)."""
    import mlflow

    from cxr.params import load_params
    from cxr.tracking import runs as tracking

    uri = tracking.resolve_tracking_uri(None, tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return name or load_params().register.model_name


def _who(by: str) -> str:
    """Who acts: on a server with sign-in (MLFLOW_TRACKING_USERNAME), the login the server checks; else
    --by or $USER (a local store has no identities)."""
    import getpass

    from cxr.errors import CxrError

    login = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    if login:
        if by and by != login:
            raise CxrError(f"--by {by}: on a server with sign-in the identity is your login ({login}); drop --by.")
        return login
    if by or os.environ.get("USER"):
        return by or os.environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a container run as 10001) and no USER
        raise CxrError("Say who acts: pass --by NAME (no user name is known for this process).") from None


@registry_app.command("list")
def registry_list(name: str = ModelOpt, as_json: bool = typer.Option(False, "--json"), tracking_uri: str = UriOpt):
    """Every version: aliases, validation F1 and accuracy, data version, commit, time, who registered it."""
    from cxr.release.promotion import format_table, list_versions

    name = _registry(tracking_uri, name)
    rows = list_versions(name)
    print(json.dumps(rows, indent=2) if as_json else format_table(rows))


@registry_app.command("show")
def registry_show(
    version: str,
    name: str = ModelOpt,
    tracking_uri: str = UriOpt,
    records_url: str = RecordsOpt,
):
    """Everything about one version (number or alias): tags, gate figures, run link, release events, and
    its sensitivity/specificity/PPV/NPV in use from radiologists' findings (`in_use`) where the web app's
    records are reachable."""
    from cxr.params import load_params
    from cxr.release.promotion import show_version

    name = _registry(tracking_uri, name)
    shown = show_version(name, version)
    shown["in_use"] = _in_use(records_url or load_params().serve.records_url, str(shown.get("version", version)))
    print(json.dumps(shown, indent=2))


def _in_use(records_url: str, version: str) -> dict | None:
    """The version's figures from the web app's records, or None where there are none to read."""
    from cxr.evaluation.live import performance_by_version
    from cxr.serving.records import existing_records, resolve_records_url

    store = existing_records(resolve_records_url(records_url))
    return None if store is None else performance_by_version(store.rows(version=version)).get(version)


@registry_app.command("compare")
def registry_compare(
    a: str,
    b: str,
    name: str = ModelOpt,
    as_json: bool = typer.Option(False, "--json"),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder for re-scoring (default ingest.data_dir)."),
    samples: int = typer.Option(2000, "--samples", help="Bootstrap resamples for the ΔF1 interval."),
    tracking_uri: str = UriOpt,
    records_url: str = RecordsOpt,
):
    """Two versions (numbers or aliases) on the same validation split; ΔF1 with a paired bootstrap 95% CI;
    next to them, each version's figures in use from radiologists' findings where the records are reachable."""
    from cxr.params import load_params, project_root
    from cxr.release.compare import compare, format_comparison

    name = _registry(tracking_uri, name)
    params = load_params()
    result = compare(name, a, b, data or project_root() / params.ingest.data_dir, samples)
    for version, shown in result["versions"].items():
        shown["in_use"] = _in_use(records_url or params.serve.records_url, version)
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
    from cxr.release.promotion import promote

    name = _registry(tracking_uri, name)
    event = promote(name, version, reason, _who(by), force)
    past = [
        what
        for what, ok in (("the gate", event["gate_passed"]), ("an incomplete model card", event["card_complete"]))
        if not ok
    ]
    forced = f" (FORCED past {' and '.join(past)})" if event["forced"] else ""
    print(f"@champion -> v{event['version']} (was v{event['from_version'] or '-'}){forced}: {event['reason']}")


@registry_app.command("rollback")
def registry_rollback(
    reason: str = typer.Option(..., "--reason", help="Why (kept in the history)."),
    by: str = typer.Option("", "--by", help="Who (default $USER)."),
    name: str = ModelOpt,
    tracking_uri: str = UriOpt,
):
    """Put @champion back on @previous-champion."""
    from cxr.release.promotion import rollback

    name = _registry(tracking_uri, name)
    event = rollback(name, reason, _who(by))
    print(f"@champion -> v{event['version']} (rolled back from v{event['from_version'] or '-'}): {event['reason']}")


@registry_app.command("history")
def registry_history(name: str = ModelOpt, as_json: bool = typer.Option(False, "--json"), tracking_uri: str = UriOpt):
    """Every promotion and rollback, oldest first, read back from the registry; last, a move of @champion
    made outside them (the MLflow UI, the API), which the web app does not serve."""
    from cxr.release.promotion import history, out_of_band

    name = _registry(tracking_uri, name)
    events = history(name)
    moved = out_of_band(name, events)  # @champion moved outside promote/rollback: shown last, as of now
    events += [moved] if moved else []
    if as_json:
        print(json.dumps(events, indent=2))
        return
    for e in events:
        forced = " FORCED" if e.get("forced") else ""
        status = "" if e.get("status", "done") == "done" else f" [{e['status'].upper()}]"
        print(
            f"{e['at']}  {e['action']:<8} v{e['from_version'] or '-'} -> v{e['version']}{forced}{status}  "
            f"by {e['by']}: {e['reason']}" + (f" ({e['error']})" if e.get("error") else "")
        )
    if not events:
        print("(no promotions yet)")


@registry_app.command("kserve")
def registry_kserve(
    canary: int = typer.Option(0, "--canary", help="Put @challenger on this share of the traffic (KServe canary)."),
    template: Path = typer.Option(
        Path("infra/k8s/kserve/inferenceservice.yaml"), "--template", help="The InferenceService to fill in."
    ),
    destination: str = typer.Option(
        "s3://mlflow/artifacts", "--artifacts-destination", help="The MLflow server's --artifacts-destination."
    ),
    name: str = ModelOpt,
    tracking_uri: str = UriOpt,
):
    """Print the KServe InferenceService serving the released version (kubectl apply -f -); with --canary N,
    @challenger on N% of the traffic beside it."""
    import yaml

    from cxr.errors import CxrError
    from cxr.release.kserve import inference_service

    if not template.is_file():
        raise CxrError(f"{template} does not exist; pass --template infra/k8s/kserve/inferenceservice.yaml.")
    service = inference_service(
        yaml.safe_load(template.read_text()), _registry(tracking_uri, name), destination, canary
    )
    print(yaml.safe_dump(service, sort_keys=False), end="")


@registry_app.command("card")
def registry_card(version: str, name: str = ModelOpt, tracking_uri: str = UriOpt):
    """Print the Markdown model card of a version."""
    from cxr.release.promotion import model_card

    name = _registry(tracking_uri, name)
    print(model_card(name, version))
