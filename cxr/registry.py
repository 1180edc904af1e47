"""The MLflow model registry: the promotion gate on validation F1, registration, aliases.

`decide_promotion` is the gate: pure, no I/O. Everything else reads or writes the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from cxr.errors import CxrError

CHAMPION = "champion"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    candidate_f1: float
    min_f1: float
    min_delta: float
    champion_f1: float | None = None
    champion_version: str | None = None
    challenger_version: str | None = None  # who held @challenger when the gate ran (for race checks)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> GateDecision:
        return GateDecision(**json.loads(text))


def decide_promotion(
    candidate_f1: float,
    min_f1: float,
    min_delta: float = 0.0,
    champion_f1: float | None = None,
    champion_version: str | None = None,
    challenger_version: str | None = None,
) -> GateDecision:
    """The F1 gate. Pass when candidate F1 >= min_f1 and, if a champion exists, candidate F1 >=
    champion F1 (on the same validation split) + min_delta."""
    figures = dict(
        candidate_f1=float(candidate_f1),
        min_f1=float(min_f1),
        min_delta=float(min_delta),
        champion_f1=None if champion_f1 is None else float(champion_f1),
        champion_version=champion_version,
        challenger_version=challenger_version,
    )
    if candidate_f1 != candidate_f1:  # NaN
        return GateDecision(False, "validation F1 is undefined (NaN)", **figures)
    if candidate_f1 < min_f1:
        return GateDecision(False, f"validation F1 {candidate_f1:.4f} < gate.min_f1 {min_f1:.4f}", **figures)
    if champion_f1 is not None and candidate_f1 < champion_f1 + min_delta:
        return GateDecision(
            False,
            f"validation F1 {candidate_f1:.4f} < champion v{champion_version} F1 {champion_f1:.4f} "
            f"+ gate.min_delta {min_delta:.4f}",
            **figures,
        )
    against = f"; champion v{champion_version} F1 {champion_f1:.4f}" if champion_f1 is not None else "; no champion yet"
    return GateDecision(True, f"validation F1 {candidate_f1:.4f} >= gate.min_f1 {min_f1:.4f}{against}", **figures)


def client():
    import mlflow

    return mlflow.MlflowClient()


def alias_version(name: str, alias: str):
    """The ModelVersion holding `alias` on registered model `name`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_candidate(model_uri: str, name: str, alias: str, tags: dict[str, str], decision: GateDecision):
    """Register a version that passed the gate; give it `alias` unless that would act on stale facts.

    - The champion moved since the gate ran: the comparison is stale, nothing is registered.
    - Another run took `alias` since this gate ran and has a higher F1: this version is registered
      (no version is ever lost) but keeps no alias, and says why in a tag.
    """
    import mlflow

    if not decision.passed:
        raise CxrError(f"Refusing to register {model_uri}: it did not pass the gate ({decision.reason}).")
    champion = alias_version(name, CHAMPION)
    now_champion = None if champion is None else str(champion.version)
    if now_champion != decision.champion_version:
        raise CxrError(
            f"The champion of '{name}' changed from v{decision.champion_version or '-'} to v{now_champion or '-'} "
            "after this run's gate compared against it; nothing was registered. Rerun the pipeline."
        )
    # one request creates the version with every tag: a failure cannot leave a version without its gate record
    version = mlflow.register_model(
        model_uri, name, tags={**{k: str(v) for k, v in tags.items()}, **gate_tags(decision)}
    )
    c = client()
    holder = alias_version(name, alias)
    if holder is not None and str(holder.version) != (decision.challenger_version or ""):
        holder_f1 = float(holder.tags.get("gate.candidate_f1", "nan"))
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
    return {
        "gate.passed": str(decision.passed).lower(),
        "gate.reason": decision.reason,
        "gate.candidate_f1": f"{decision.candidate_f1:.6f}",
        "gate.min_f1": str(decision.min_f1),
        "gate.min_delta": str(decision.min_delta),
        "gate.champion_f1": "" if decision.champion_f1 is None else f"{decision.champion_f1:.6f}",
        "gate.champion_version": decision.champion_version or "",
    }
