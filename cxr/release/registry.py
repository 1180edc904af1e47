"""The MLflow model registry: registration of gated candidates, aliases, the gate's record on a version.

The gate itself (`decide_promotion`) is pure and lives in cxr/release/gate.py.
"""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from cxr.aliases import CHAMPION
from cxr.errors import CxrError
from cxr.release.gate import GateDecision
from cxr.tracking.record import RUN_ID, GateRecord, Lineage


def client():
    return mlflow.MlflowClient()


def alias_version(name: str, alias: str):
    """The ModelVersion holding `alias` on registered model `name`, or None."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def registered_by_run(name: str, run_id: str):
    """The version of `name` a pipeline run (its MLflow parent run id) already registered, if any."""
    if not run_id:
        return None
    found = client().search_model_versions(f"name = '{name}' and tags.{RUN_ID} = '{run_id}'")
    return found[0] if found else None


def register_candidate(model_uri: str, name: str, alias: str, tags: dict[str, str], decision: GateDecision):
    """Register a version that passed the gate; give it `alias` unless that would act on stale facts.

    - The champion moved since the gate ran: the comparison is stale, nothing is registered.
    - Another run took `alias` since this gate ran and has a higher F1: this version is registered
      (no version is ever lost) but keeps no alias, and says why in a tag.
    """
    if not decision.passed:
        raise CxrError(f"Refusing to register {model_uri}: it did not pass the gate ({decision.reason}).")
    champion = alias_version(name, CHAMPION)
    now_champion = None if champion is None else str(champion.version)
    if now_champion != decision.champion_version:
        raise CxrError(
            f"The champion of '{name}' changed from v{decision.champion_version or '-'} to v{now_champion or '-'} "
            "after this run's gate compared against it; nothing was registered. Rerun the pipeline."
        )
    # one request creates the version with every tag: a failure cannot leave a version without its gate record;
    # a retried step finds the version its first attempt registered instead of registering a second one
    version = registered_by_run(name, Lineage.from_tags(tags).run_id) or mlflow.register_model(
        model_uri, name, tags={**{k: str(v) for k, v in tags.items()}, **gate_tags(decision)}
    )
    c = client()
    holder = alias_version(name, alias)
    if holder is not None and str(holder.version) != (decision.challenger_version or ""):
        holder_f1 = float(GateRecord.from_tags(holder.tags).figures.get("candidate_f1", "nan"))
        if holder_f1 > decision.candidate_f1:
            note = (
                f"@{alias} moved to v{holder.version} (F1 {holder_f1:.4f}) after this run's gate; it keeps "
                f"@{alias} over this version (F1 {decision.candidate_f1:.4f})"
            )
            c.set_model_version_tag(name, version.version, "alias.skipped", note)
            return version, note
    c.set_registered_model_alias(name, alias, version.version)
    return version, ""


def gate_tags(decision: GateDecision) -> dict[str, str]:
    """The gate's record on a registered version: outcome, validation and test F1 with intervals, champion."""

    def fmt(value) -> str:
        return "" if value is None else f"{value:.6f}"

    figures = {
        "candidate_f1": fmt(decision.candidate_f1),
        "candidate_f1_ci_low": fmt(decision.val.get("f1_low")),
        "candidate_f1_ci_high": fmt(decision.val.get("f1_high")),
        "min_f1": str(decision.min_f1),
        "min_delta": str(decision.min_delta),
        "min_val_per_class": str(decision.min_val_per_class),
        "champion_f1": fmt(decision.champion_f1),
        "champion_version": decision.champion_version or "",
    }
    if decision.champion is not None:
        figures["delta_f1_ci"] = f"{decision.champion['low']:+.4f} to {decision.champion['high']:+.4f}"
    if decision.test is not None:
        figures["test_f1"] = fmt(decision.test["f1"])
        figures["test_f1_ci"] = f"{decision.test['f1_low']:.4f} to {decision.test['f1_high']:.4f}"
    return GateRecord(decision.outcome, decision.reason, "", decision.passed, figures).tags()
