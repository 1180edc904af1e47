"""Retraining: run the pipeline only when the training signature (cxr/tracking/signature.py: data version,
parameters that shape the model, training code) differs from the newest registered version's."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from cxr.release.registry import client
from cxr.tracking.record import Lineage
from cxr.tracking.signature import TrainingSignature


@dataclass
class RetrainDecision:
    run: bool
    data_version: str
    newest_version: str | None
    newest_data_version: str | None
    message: str
    changed: tuple[str, ...] = ()  # the signature's parts that changed: data, parameters, training code


def newest_version(name: str):
    """The registered version with the highest number, or None (no model or no versions yet)."""
    try:
        versions = client().search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def logged_params(version) -> dict[str, str]:
    """The MLflow params of the pipeline run that trained `version` ({} when unknown)."""
    run_id = Lineage.from_tags(version.tags).run_id if version is not None else ""
    try:
        return dict(client().get_run(run_id).data.params) if run_id else {}
    except MlflowException:
        return {}


def decide_retrain(
    signature: TrainingSignature, newest, force: bool = False, param_changes: list[str] | None = None
) -> RetrainDecision:
    """Pure: retrain when forced, when nothing is registered, or when any part of the signature differs
    from the newest version's; the message names what changed, in one line (`param_changes`: the
    parameters by name, when the caller could read the newest version's run)."""
    number = None if newest is None else str(newest.version)
    before = None if newest is None else TrainingSignature.from_tags(newest.tags)

    def decision(run: bool, message: str, changed: tuple[str, ...] = ()) -> RetrainDecision:
        return RetrainDecision(
            run, signature.data_version, number, before.data_version if before else None, message, changed
        )

    if force:
        return decision(True, "retraining (--force)")
    if newest is None:
        return decision(True, "no registered version yet: training")
    changes = signature.changes(before)
    if not changes:
        return decision(
            False,
            f"version {number} was trained on the same data ({signature.data_version}), parameters and "
            "training code; nothing to do",
        )
    words = []
    for change in changes:
        if change.startswith("parameters") and param_changes:
            more = f" and {len(param_changes) - 3} more" if len(param_changes) > 3 else ""
            shown = ", ".join(param_changes[:3]) + more
            change = f"parameters ({shown})"
        words.append(change)
    parts = tuple(change.split(" ")[0] if not change.startswith("training") else "code" for change in changes)
    return decision(True, f"changed since version {number}: {'; '.join(words)}: retraining", parts)
