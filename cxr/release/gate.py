"""The promotion gate: pure, no I/O. It decides on intervals, not point estimates.

Three outcomes:
- inconclusive: too few validation images of a class to decide anything (gate.min_val_per_class), or an
  interval that straddles the bar: nothing is registered and the reason says what would settle it;
- failed: the evidence is against the candidate (its F1 is below gate.min_f1, or it is worse than the
  champion on the same images by more than the interval allows);
- passed: the 95% bootstrap lower bound of validation F1 clears gate.min_f1 and, against a champion,
  the lower bound of the paired F1 difference on the same images clears gate.min_delta.

Two checks of what the model reads can be required too (off at 0): the test ROC AUC with the lung fields
hidden must not exceed gate.max_lungs_hidden_auc (a model that still separates the classes without the
lungs reads the source), and the specificity on external normals must reach
gate.min_external_specificity (its Wilson lower bound, or the outcome is inconclusive).

Test-split figures are recorded with the decision (for the release manager) but never decide it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass(frozen=True)
class Evidence:
    """A model's F1 on one split with its 95% bootstrap interval and the class counts it rests on."""

    f1: float
    f1_low: float
    f1_high: float
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class PairedDelta:
    """F1(candidate) - F1(champion) on the same validation images, with its paired 95% interval."""

    champion_version: str
    champion_f1: float
    delta: float
    low: float
    high: float


@dataclass(frozen=True)
class SafetyEvidence:
    """What the model reads: test ROC AUC with the lungs hidden, specificity on external normals (and its
    95% Wilson interval); NaN where not measured."""

    lungs_hidden_auc: float = math.nan
    external_specificity: float = math.nan
    external_low: float = math.nan
    external_high: float = math.nan
    external_n: int = 0


@dataclass(frozen=True)
class SafetyBars:
    max_lungs_hidden_auc: float = 0.0  # 0: not required
    min_external_specificity: float = 0.0


@dataclass(frozen=True)
class GateDecision:
    outcome: str
    reason: str
    advice: str
    candidate_f1: float
    min_f1: float
    min_delta: float
    min_val_per_class: int
    val: dict = field(default_factory=dict)
    champion: dict | None = None
    test: dict | None = None
    challenger_version: str | None = None  # who held @challenger when the gate ran (for race checks)
    safety: dict | None = None  # SafetyEvidence, as recorded
    bars: dict | None = None  # SafetyBars

    @property
    def passed(self) -> bool:
        return self.outcome == PASSED

    @property
    def champion_version(self) -> str | None:
        return None if self.champion is None else self.champion["champion_version"]

    @property
    def champion_f1(self) -> float | None:
        return None if self.champion is None else self.champion["champion_f1"]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> GateDecision:
        return GateDecision(**json.loads(text))


def decide_promotion(
    val: Evidence,
    min_f1: float,
    min_delta: float = 0.0,
    min_val_per_class: int = 10,
    champion: PairedDelta | None = None,
    test: Evidence | None = None,
    challenger_version: str | None = None,
    safety: SafetyEvidence | None = None,
    bars: SafetyBars | None = None,
) -> GateDecision:
    """The gate (see the module docstring)."""
    record = dict(
        candidate_f1=float(val.f1),
        min_f1=float(min_f1),
        min_delta=float(min_delta),
        min_val_per_class=int(min_val_per_class),
        val=asdict(val),
        champion=None if champion is None else asdict(champion),
        test=None if test is None else asdict(test),
        challenger_version=challenger_version,
        safety=None if safety is None else asdict(safety),
        bars=None if bars is None else asdict(bars),
    )
    verdict = (
        _evidence_verdict(val, min_f1, min_val_per_class)
        or safety_verdict(safety or SafetyEvidence(), bars or SafetyBars())
        or _champion_verdict(val, min_f1, min_delta, champion)
    )
    return GateDecision(*verdict, **record)


MORE_DATA = (
    "add labelled images (or give the validation split a larger share, ingest.split) and rerun, or "
    "cross-validate (--set evaluate.cv_folds=5: every train + val image is then scored by a model that never "
    "saw it, and the gate reads those); to register a demonstration model anyway: "
    "--set gate.min_val_per_class=1 --set gate.min_f1=0 (the settings are recorded on the version)"
)


def _interval(val: Evidence) -> str:
    return f"validation F1 {val.f1:.4f} (95% CI {val.f1_low:.4f}-{val.f1_high:.4f})"


def _evidence_verdict(val: Evidence, min_f1: float, min_val_per_class: int) -> tuple[str, str, str] | None:
    """(outcome, reason, next step) when the validation evidence alone decides: too few images, an
    undefined F1, an F1 below the bar or an interval reaching below it; None when it clears the bar."""
    fewest = min(val.n_positive, val.n_negative)
    if fewest < min_val_per_class:
        return (
            INCONCLUSIVE,
            f"the validation split holds {val.n_positive} positive and {val.n_negative} negative images; "
            f"below gate.min_val_per_class {min_val_per_class} per class no F1 is worth gating on",
            MORE_DATA,
        )
    if math.isnan(val.f1):
        return FAILED, "validation F1 is undefined (NaN)", "check the training logs"
    if val.f1 < min_f1:
        return FAILED, f"{_interval(val)} < gate.min_f1 {min_f1:.4f}", "improve the model; nothing to promote"
    if not val.f1_low >= min_f1:
        return (
            INCONCLUSIVE,
            f"{_interval(val)}: the lower bound is below gate.min_f1 {min_f1:.4f}, so the F1 may be no better than "
            "the bar",
            MORE_DATA,
        )
    return None


def _champion_verdict(val: Evidence, min_f1: float, min_delta: float, champion: PairedDelta | None):
    """(outcome, reason, next step) of the comparison with the champion on the same images (passed when
    there is no champion yet)."""
    interval = _interval(val)
    if champion is None:
        return PASSED, f"{interval} >= gate.min_f1 {min_f1:.4f}; no champion yet", ""
    paired = (
        f"F1 - champion v{champion.champion_version} F1 = {champion.delta:+.4f} "
        f"(paired 95% CI {champion.low:+.4f} to {champion.high:+.4f})"
    )
    if champion.high < min_delta:
        return FAILED, f"{paired} < gate.min_delta {min_delta:.4f}", "the champion stays; nothing to promote"
    if not champion.low >= min_delta:
        return (
            INCONCLUSIVE,
            f"{paired}: the interval reaches below gate.min_delta {min_delta:.4f}",
            "the two models cannot be told apart on these images; " + MORE_DATA,
        )
    return PASSED, f"{interval} >= gate.min_f1 {min_f1:.4f}; {paired}", ""


def safety_verdict(safety: SafetyEvidence, bars: SafetyBars) -> tuple[str, str, str] | None:
    """(outcome, reason, advice) when a required check of what the model reads is not met; None when met."""
    if bars.max_lungs_hidden_auc > 0:
        auc = safety.lungs_hidden_auc
        if math.isnan(auc):
            return INCONCLUSIVE, "the shortcut probe was not run (the test split lacks a class)", "add test images"
        if auc > bars.max_lungs_hidden_auc:
            return (
                FAILED,
                f"with the lung fields hidden the model still separates the classes (test ROC AUC {auc:.3f} > "
                f"gate.max_lungs_hidden_auc {bars.max_lungs_hidden_auc:.3f}): it reads the source, not the lungs",
                "train on the lung view (lungs.view=lungs) or with more sources per class",
            )
    if bars.min_external_specificity > 0:
        spec, low, bar = safety.external_specificity, safety.external_low, bars.min_external_specificity
        if math.isnan(spec):
            return INCONCLUSIVE, "the external check was not run (evaluate.external_dir is off)", "set it"
        figure = (
            f"specificity on {safety.external_n} external normals {spec:.3f} "
            f"(95% CI {low:.3f}-{safety.external_high:.3f})"
        )
        if spec < bar:
            return (
                FAILED,
                f"{figure} < gate.min_external_specificity {bar:.3f}: it calls films from another source COVID",
                "do not deploy outside the training sources; train on more sources",
            )
        if not low >= bar:
            return (
                INCONCLUSIVE,
                f"{figure}: the lower bound is below gate.min_external_specificity {bar:.3f}",
                ("measure on more external normals (evaluate.external_dir)"),
            )
    return None


def disagreement(val: dict | None, test: dict | None) -> str:
    """A warning when validation and test F1 disagree beyond their 95% intervals (the intervals do not
    overlap): the split the gate decided on does not describe images the model never saw. '' otherwise."""
    try:
        v_low, v_high, t_low, t_high = (
            float(x) for x in (val["f1_low"], val["f1_high"], test["f1_low"], test["f1_high"])
        )
    except (TypeError, KeyError, ValueError):
        return ""
    if any(math.isnan(x) for x in (v_low, v_high, t_low, t_high)) or (t_high >= v_low and v_high >= t_low):
        return ""
    return (
        f"validation F1 {float(val['f1']):.3f} ({v_low:.3f}-{v_high:.3f}) and test F1 {float(test['f1']):.3f} "
        f"({t_low:.3f}-{t_high:.3f}) disagree beyond their 95% intervals: do not trust the validation figure"
    )


def evidence_from_tags(tags: dict, split: str) -> dict | None:
    """A registered version's F1 evidence on `split` from its tags (`<split>_f1`, `<split>_f1_ci_low/high`)."""
    if f"{split}_f1" not in tags:
        return None
    return {
        "f1": tags[f"{split}_f1"],
        "f1_low": tags.get(f"{split}_f1_ci_low", "nan"),
        "f1_high": tags.get(f"{split}_f1_ci_high", "nan"),
    }
