"""The register and reject steps: the gate's outcome recorded in the registry and on the run."""

from __future__ import annotations

import dataclasses
import json
import os

import mlflow

from cxr import events
from cxr.evaluation.metrics import INTERVAL_METRICS
from cxr.params import Params
from cxr.release.card import MODEL_PURPOSE, build_card, render_markdown, version_description
from cxr.release.gate import GateDecision
from cxr.release.registry import register_candidate
from cxr.steps.context import RunContext
from cxr.tracking import record
from cxr.tracking import runs as tracking
from cxr.tracking.record import Lineage, RunRecord
from cxr.tracking.signature import TrainingSignature, code_version, params_hash


def signature_of(parent, data_version: str, params: Params) -> TrainingSignature:
    """The version's training signature; the parameters' hash as the run recorded it when it opened
    (the kfp register step is given only the parameters it reads, not every shaping one)."""
    recorded = Lineage.from_tags(parent.data.tags).params_hash
    return TrainingSignature(data_version, recorded or params_hash(params), code_version())


def register_step(ctx: RunContext, model_uri: str, decision: GateDecision, params: Params, lineage: Lineage) -> str:
    """Register the gated model as a new version (alias, lineage and metric tags, model card); `lineage`: the
    data version the ingest step read and the commit that compiled the pipeline."""
    name = params.register.model_name
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "register"):
        client = mlflow.MlflowClient()
        parent = client.get_run(ctx.parent_run_id)
        summary = _summary_tags(parent)
        version, note = register_candidate(
            model_uri,
            name,
            params.register.alias,
            {
                **summary,
                **Lineage(
                    data_version=lineage.data_version,
                    git_commit=lineage.git_commit,
                    run_id=ctx.parent_run_id,
                    profile=params.profile,
                ).tags(),
                record.REGISTERED_BY: registered_by(parent),
                **signature_of(parent, lineage.data_version, params).tags(),
                "weights": params.train.weights,
                "positive_class": params.ingest.positive_class,
            },
            decision,
        )
        number = str(version.version)
        run = RunRecord.from_run(parent)
        given = dataclasses.replace(run.lineage, data_version=lineage.data_version, git_commit=lineage.git_commit)
        _log_card(client, ctx, name, number, dataclasses.replace(run, lineage=given))
        mlflow.set_tag(record.REGISTERED_VERSION, number)
        if note:
            mlflow.set_tag("alias.skipped", note)
    record.set_registered(client, ctx.parent_run_id, number)
    tracking.finish_pipeline_run(ctx.tracking_uri, ctx.parent_run_id)
    events.figure(f"{name} version {number}" + (f" ({note})" if note else f" as @{params.register.alias}"))
    return number


def _summary_tags(parent) -> dict[str, str]:
    """The registry's summary of the run's figures: each split's metrics with intervals, and the threshold."""
    metrics = parent.data.metrics
    keys = (*INTERVAL_METRICS, "f1_ci_low", "f1_ci_high", "threshold")
    summary = {
        f"{split}_{k}": f"{metrics[f'{split}_{k}']:.6f}"
        for split in ("val", "test")
        for k in keys
        if f"{split}_{k}" in metrics
    }
    summary["threshold_method"] = parent.data.tags.get("threshold_method", "")
    return summary


def _log_card(client, ctx: RunContext, name: str, number: str, run: RunRecord) -> None:
    """The model card (markdown and JSON) logged on the register run and the pipeline run, and linked
    from the version's tags."""
    card = build_card(name, number, run)
    stem = f"model_cards/{name}-v{number}"
    for suffix, text in ((".md", render_markdown(card, run.params)), (".json", json.dumps(card, indent=2))):
        mlflow.log_text(text, stem + suffix)
        client.log_text(ctx.parent_run_id, text, stem + suffix)
    client.set_model_version_tag(name, number, "model_card", f"runs:/{ctx.parent_run_id}/{stem}.md")
    client.set_model_version_tag(name, number, "model_card_json", f"runs:/{ctx.parent_run_id}/{stem}.json")
    # what the registry page shows a release manager: the card itself, and what the model is for
    client.update_model_version(
        name, number, description=version_description(card, f"runs:/{ctx.parent_run_id}/{stem}.md")
    )
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_PURPOSE)


def reject_step(ctx: RunContext, decision: GateDecision) -> str:
    """The gate failed: register nothing, record why on the pipeline run, close it."""
    mlflow.set_tracking_uri(ctx.tracking_uri)
    record.set_registered(mlflow.MlflowClient(), ctx.parent_run_id, None)
    tracking.finish_pipeline_run(ctx.tracking_uri, ctx.parent_run_id)
    events.figure("nothing registered")
    return decision.reason


def registered_by(parent_run) -> str:
    """Who registers: the MLflow identity the step signs in as; without sign-in (a local store), the user
    MLflow recorded on the pipeline's run. Never raises (containers run as a uid with no passwd entry)."""
    return (
        os.environ.get("MLFLOW_TRACKING_USERNAME")
        or parent_run.data.tags.get("mlflow.user")
        or parent_run.info.user_id
        or "unknown"
    )
