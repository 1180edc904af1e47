"""The run record: what a pipeline run records about itself, written and read back in this module only.

A pipeline run's MLflow parent run carries its lineage (data version read and asked for, code commit,
hash of the parameters that shape the model, profile), the gate's decision, what it registered, notes
from its steps (how the threshold and temperature were chosen, on which images) as tags, its effective
parameters as params and its figures as metrics; a registered version carries a copy of the lineage
and the gate's record as tags. The run result, the model card, compare, retrain, the registry listing
and the local runner read them back as `RunRecord`, `Lineage` and `GateRecord`: no other module spells
these tag names.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cxr.evaluation.metrics import as_number, figure
from cxr.params import Params, from_flat, section_fields

# lineage: on the parent run and copied onto the registered version
DATA_VERSION = "data_version"
DATA_VERSION_REQUESTED = "data_version_requested"
DATA_PATH = "data_path"  # the data's folder in the repository (data.dvc's path)
DVC_REMOTE = "dvc_remote"
GIT_COMMIT = "git_commit"
PARAMS_HASH = "params_hash"
CODE_VERSION = "code_version"
PROFILE = "profile"
RUN_ID = "run_id"  # on a version: the pipeline run that registered it
REGISTERED_BY = "registered_by"
# what the run did
MODEL_URI = "model_uri"
REGISTERED_VERSION = "registered_version"
NOT_REGISTERED = "none"
ERROR = "error"
FAILED_STEP = "failed_step"
# the gate's decision
GATE_PREFIX = "gate."
GATE_PASSED = "gate.passed"
GATE_OUTCOME = "gate.outcome"
GATE_REASON = "gate.reason"
GATE_ADVICE = "gate.advice"
GATE_CANDIDATE_F1 = "gate.candidate_f1"
# notes the steps leave on the parent run
NOTES = ("threshold_method", "temperature_method", "validation", "ood.method", "scope.method", "shortcut.verdict")
# tags a continued run (cxr/tracking/runs.py) must not copy from the run it continues: they describe that run
OWN_OUTCOME = ("mlflow.", GATE_PREFIX, REGISTERED_VERSION, ERROR, FAILED_STEP, MODEL_URI, "threshold_method")


@dataclass(frozen=True)
class Lineage:
    """Where a run's model comes from ("" where the run did not record it)."""

    data_version: str = ""
    data_version_requested: str = ""
    data_path: str = ""
    dvc_remote: str = ""
    git_commit: str = ""
    params_hash: str = ""
    code_version: str = ""
    profile: str = ""
    run_id: str = ""

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Lineage:
        return cls(**{f.name: tags.get(f.name, "") for f in dataclasses.fields(cls)})

    def tags(self) -> dict[str, str]:
        """The fields it holds, as tags (empty ones left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


@dataclass(frozen=True)
class GateRecord:
    """The promotion gate's decision as a run or a version records it; `figures` holds the rest of its
    gate.* tags (intervals, bars, champion) by their short names."""

    outcome: str = ""  # passed | failed | inconclusive; "" when the gate did not run
    reason: str = ""
    advice: str = ""
    passed: bool | None = None
    figures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> GateRecord:
        flag = tags.get(GATE_PASSED)
        passed = None if flag is None else flag == "true"
        # versions registered before the three outcomes existed carry only gate.passed
        outcome = tags.get(GATE_OUTCOME) or ({True: "passed", False: "failed"}.get(passed, "") if flag else "")
        own = (GATE_PASSED, GATE_OUTCOME, GATE_REASON, GATE_ADVICE)
        figures = {
            k.removeprefix(GATE_PREFIX): v for k, v in tags.items() if k.startswith(GATE_PREFIX) and k not in own
        }
        return cls(outcome, tags.get(GATE_REASON, ""), tags.get(GATE_ADVICE, ""), passed, figures)

    def tags(self) -> dict[str, str]:
        out = {GATE_OUTCOME: self.outcome, GATE_REASON: self.reason}
        if self.passed is not None:
            out[GATE_PASSED] = str(self.passed).lower()
        if self.advice:
            out[GATE_ADVICE] = self.advice
        return out | {GATE_PREFIX + k: v for k, v in self.figures.items()}

    def as_dict(self) -> dict[str, str]:
        """Every gate.* field by its short name (outcome, reason, passed, candidate_f1, ...)."""
        return {k.removeprefix(GATE_PREFIX): v for k, v in sorted(self.tags().items())}


@dataclass(frozen=True)
class RunRecord:
    """A pipeline run as its MLflow parent run recorded it."""

    lineage: Lineage = field(default_factory=Lineage)
    gate: GateRecord = field(default_factory=GateRecord)
    params: Params = field(default_factory=Params)  # the effective parameters, typed
    metrics: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # NOTES the steps left ("" where none)
    registered_version: str = ""  # a version number, NOT_REGISTERED, or "" when the run did not get that far
    model_uri: str = ""
    error: str = ""
    failed_step: str = ""
    status: str = ""
    experiment_id: str = ""

    @classmethod
    def from_run(cls, run) -> RunRecord:
        """From an MLflow Run (the pipeline's parent run)."""
        tags = {**run.data.tags, RUN_ID: run.info.run_id}
        found = cls.from_tags(tags, typed_params(run.data.params), dict(sorted(run.data.metrics.items())))
        return dataclasses.replace(found, status=run.info.status, experiment_id=run.info.experiment_id)

    @classmethod
    def from_tags(cls, tags: dict[str, str], params: Params, metrics: dict[str, float]) -> RunRecord:
        """From a run's tags, its typed parameters and its metrics."""
        return cls(
            lineage=Lineage.from_tags(tags),
            gate=GateRecord.from_tags(tags),
            params=params,
            metrics=metrics,
            notes={k: tags.get(k, "") for k in NOTES},
            registered_version=tags.get(REGISTERED_VERSION, ""),
            model_uri=tags.get(MODEL_URI, ""),
            error=tags.get(ERROR, ""),
            failed_step=tags.get(FAILED_STEP, ""),
        )

    def note(self, key: str) -> str:
        return self.notes.get(key, "")

    @property
    def safety(self) -> SafetyFigures:
        return SafetyFigures.from_metrics(self.metrics, self.notes)


@dataclass(frozen=True)
class InputGateFigures:
    method: str = ""
    threshold: float | None = None
    val_accept_rate: float | None = None
    test_accept_rate: float | None = None
    reject_rate: float | None = None  # of the offline out-of-distribution set
    n: int = 0  # images in that set


@dataclass(frozen=True)
class ScopeFigures:
    method: str = ""
    threshold: float | None = None
    refuse_rate: float | None = None  # of the reference children, cross-fitted
    n: int = 0
    val_accept_rate: float | None = None
    test_accept_rate: float | None = None


@dataclass(frozen=True)
class ShortcutFigures:
    full_auc: float | None = None
    lungs_hidden_auc: float | None = None
    lungs_only_auc: float | None = None
    verdict: str = ""


@dataclass(frozen=True)
class ExternalFigures:
    specificity: dict = field(default_factory=dict)  # {value, ci_low, ci_high}
    n: int = 0
    shift_warn_rate: float | None = None
    refuse_rate: float | None = None


@dataclass(frozen=True)
class SafetyFigures:
    """What a run measured of its safety checks, read once from its metrics and notes (None: not measured)."""

    input_gate: InputGateFigures | None = None
    scope: ScopeFigures | None = None
    shortcut: ShortcutFigures | None = None
    external: ExternalFigures | None = None

    @classmethod
    def from_metrics(cls, metrics: dict, notes: dict | None = None) -> SafetyFigures:
        notes, m = notes or {}, metrics
        gate = scope = shortcut = external = None
        if "ood_reject_rate" in m:
            gate = InputGateFigures(
                notes.get("ood.method", ""),
                as_number(m.get("ood_threshold")),
                as_number(m.get("val_ood_accept_rate")),
                as_number(m.get("test_ood_accept_rate")),
                as_number(m.get("ood_reject_rate")),
                int(m.get("ood_n", 0) or 0),
            )
        if "scope_refuse_rate" in m:
            scope = ScopeFigures(
                notes.get("scope.method", ""),
                as_number(m.get("scope_threshold")),
                as_number(m.get("scope_refuse_rate")),
                int(m.get("scope_n", 0) or 0),
                as_number(m.get("val_scope_accept_rate")),
                as_number(m.get("test_scope_accept_rate")),
            )
        if "test_lungs_hidden_auc" in m:
            shortcut = ShortcutFigures(
                as_number(m.get("test_roc_auc")),
                as_number(m.get("test_lungs_hidden_auc")),
                as_number(m.get("test_lungs_only_auc")),
                notes.get("shortcut.verdict", ""),
            )
        if "external_specificity" in m:
            external = ExternalFigures(
                figure(m, "external_specificity"),
                int(m.get("external_n", 0) or 0),
                as_number(m.get("external_shift_warn_rate")),
                as_number(m.get("external_refuse_rate")),
            )
        return cls(gate, scope, shortcut, external)


def typed_params(logged: dict[str, str]) -> Params:
    """The effective parameters from a run's logged MLflow params (`stage.key` -> text), each read back
    as its field's type; keys this version of the code does not know are left out, missing ones default."""
    known = {f"{stage}.{f.name}": f.type for stage in _sections() for f in section_fields(stage)}
    values = {key: _read(text) for key, text in logged.items() if key in known}
    return from_flat(values, logged.get(PROFILE, "cpu"))


def _sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Params) if f.name != PROFILE]


def _read(text: str) -> Any:
    """A logged value as the literal it was written from ("True", "(3, 4, 5)", "{'train': 0.6}"), else the
    text itself (a string parameter)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, tuple) else value


# where the steps write: one function per kind of fact, so the names above stay here


def lineage_tags(
    data_version: str, requested: str, git_commit: str, data_path: str = "", dvc_remote: str = ""
) -> dict[str, str]:
    """The lineage every front-end opens a pipeline run with (where the data is versioned, when known)."""
    tags = {DATA_VERSION: data_version, DATA_VERSION_REQUESTED: requested, GIT_COMMIT: git_commit}
    return tags | {k: v for k, v in ((DATA_PATH, data_path), (DVC_REMOTE, dvc_remote)) if v}


def set_model_uri(client, run_id: str, model_uri: str) -> None:
    client.set_tag(run_id, MODEL_URI, model_uri)


def set_registered(client, run_id: str, version: str | None) -> None:
    """The version the run registered; None: the gate refused and nothing was."""
    client.set_tag(run_id, REGISTERED_VERSION, NOT_REGISTERED if version is None else version)


def set_gate(client, run_id: str, gate: GateRecord) -> None:
    for key, value in gate.tags().items():
        client.set_tag(run_id, key, value)


def set_failure(client, run_id: str, step: str, error: str) -> None:
    """Why the run failed, and in which step ("" when it is not known)."""
    if step:
        client.set_tag(run_id, FAILED_STEP, step)
    client.set_tag(run_id, ERROR, error)


def registered_version(tags: dict[str, str]) -> str:
    return tags.get(REGISTERED_VERSION, "")
