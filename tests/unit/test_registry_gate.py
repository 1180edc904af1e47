"""The gate (cxr/release/gate.py): three outcomes on intervals; the threshold rule (cxr/evaluation/thresholds.py)."""

import math

import numpy as np
import pytest

from cxr.evaluation.thresholds import decide_threshold
from cxr.release.gate import (
    FAILED,
    INCONCLUSIVE,
    PASSED,
    Evidence,
    GateDecision,
    PairedDelta,
    SafetyBars,
    SafetyEvidence,
    decide_promotion,
)


def ev(f1, low, high, n=20):
    return Evidence(f1, low, high, n, n)


def test_passes_when_the_lower_bound_clears_the_floor_without_a_champion():
    d = decide_promotion(ev(0.9, 0.75, 0.97), min_f1=0.7)
    assert d.outcome == PASSED and d.passed and "no champion yet" in d.reason and "95% CI 0.7500" in d.reason


def test_fails_when_the_point_estimate_is_below_the_floor():
    d = decide_promotion(ev(0.69, 0.5, 0.8), min_f1=0.7)
    assert d.outcome == FAILED and not d.passed and "< gate.min_f1" in d.reason


def test_a_point_above_the_floor_with_an_interval_below_it_is_inconclusive():
    d = decide_promotion(ev(0.857, 0.4, 1.0), min_f1=0.6)
    assert (
        d.outcome == INCONCLUSIVE and not d.passed and "lower bound" in d.reason and "add labelled images" in d.advice
    )


def test_too_few_validation_images_of_a_class_is_inconclusive_whatever_the_f1():
    d = decide_promotion(Evidence(1.0, 1.0, 1.0, 4, 30), min_f1=0.6, min_val_per_class=10)
    assert d.outcome == INCONCLUSIVE and "4 positive and 30 negative" in d.reason and "min_val_per_class 10" in d.reason


def test_against_a_champion_the_paired_interval_decides():
    strong = ev(0.9, 0.8, 0.95)
    better = PairedDelta("3", 0.8, 0.1, 0.03, 0.18)
    assert decide_promotion(strong, 0.7, 0.0, champion=better).outcome == PASSED
    unclear = PairedDelta("3", 0.85, 0.05, -0.04, 0.12)
    d = decide_promotion(strong, 0.7, 0.0, champion=unclear)
    assert d.outcome == INCONCLUSIVE and "champion v3" in d.reason and "cannot be told apart" in d.advice
    worse = PairedDelta("3", 0.95, -0.05, -0.12, -0.01)
    assert decide_promotion(strong, 0.7, 0.0, champion=worse).outcome == FAILED
    assert decide_promotion(strong, 0.7, 0.05, champion=better).outcome == INCONCLUSIVE  # 0.03 < min_delta 0.05


def test_the_safety_bars_are_off_by_default_and_recorded_when_set():
    reads_source = SafetyEvidence(lungs_hidden_auc=0.9, external_specificity=0.3, external_low=0.2, external_high=0.4)
    assert decide_promotion(ev(0.9, 0.8, 0.95), 0.7, safety=reads_source).outcome == PASSED
    d = decide_promotion(ev(0.9, 0.8, 0.95), 0.7, safety=reads_source, bars=SafetyBars(max_lungs_hidden_auc=0.65))
    assert (
        d.outcome == FAILED
        and "lung fields hidden" in d.reason
        and "0.900 > gate.max_lungs_hidden_auc 0.650" in d.reason
    )
    assert GateDecision.from_json(d.to_json()).safety["lungs_hidden_auc"] == 0.9


@pytest.mark.parametrize(
    ("spec", "low", "outcome"), [(0.85, 0.81, PASSED), (0.85, 0.75, INCONCLUSIVE), (0.7, 0.6, FAILED)]
)
def test_external_specificity_decides_on_its_lower_bound(spec, low, outcome):
    safety = SafetyEvidence(0.5, spec, low, min(1.0, spec + 0.05), 174)
    d = decide_promotion(ev(0.9, 0.8, 0.95), 0.7, safety=safety, bars=SafetyBars(min_external_specificity=0.8))
    assert d.outcome == outcome
    assert outcome == PASSED or "174 external normals" in d.reason


def test_a_required_figure_that_was_not_measured_is_inconclusive():
    d = decide_promotion(ev(0.9, 0.8, 0.95), 0.7, safety=SafetyEvidence(), bars=SafetyBars(0.65, 0.8))
    assert d.outcome == INCONCLUSIVE and "not run" in d.reason


def test_nan_f1_never_passes():
    assert decide_promotion(ev(math.nan, math.nan, math.nan), 0.0).outcome == FAILED


def test_test_figures_are_recorded_but_never_decide():
    val = ev(0.9, 0.8, 0.95)
    for test in (ev(0.0, 0.0, 0.2), ev(1.0, 1.0, 1.0)):
        d = decide_promotion(val, 0.7, test=test)
        assert d.outcome == PASSED and d.test["f1"] == test.f1


def test_decision_round_trips_through_json():
    d = decide_promotion(ev(0.9, 0.8, 0.95), 0.5, 0.0, 10, PairedDelta("2", 0.8, 0.1, 0.01, 0.2), ev(0.7, 0.5, 0.9))
    back = GateDecision.from_json(d.to_json())
    assert back == d and back.champion_version == "2" and back.champion_f1 == 0.8


def test_the_224_px_run_from_the_issue_is_not_registered():
    """8 validation images (4 per class), F1 0.857 with a bootstrap interval reaching 0.4: no @challenger."""
    d = decide_promotion(Evidence(0.857, 0.4, 1.0, 4, 4), min_f1=0.6, test=Evidence(0.0, 0.0, 0.0, 4, 4))
    assert not d.passed and d.outcome == INCONCLUSIVE


def test_a_threshold_from_a_handful_of_images_stays_at_the_fixed_value():
    y, p = np.array([1, 1, 1, 1, 0, 0, 0, 0]), np.array([0.9, 0.84, 0.83, 0.2, 0.1, 0.05, 0.3, 0.82])
    threshold, method = decide_threshold(y, p, "max_f1", min_per_class=10)
    assert threshold == 0.5 and "the validation images hold 4 of their smaller class" in method


@pytest.mark.parametrize("n", [20, 200, 2000])
def test_a_tuned_threshold_is_shrunk_toward_half_less_as_the_data_grows(n):
    rng = np.random.default_rng(0)
    y = np.repeat([1, 0], n // 2)
    p = np.clip(np.where(y == 1, 0.9, 0.8) + rng.normal(0, 0.02, n), 0, 1)  # separable only near 0.85
    threshold, method = decide_threshold(y, p, "max_f1", min_per_class=10, prior_images=20)
    assert 0.5 < threshold < 0.85 and "shrunk toward 0.5" in method
    weight = n / (n + 20)
    assert threshold == pytest.approx(0.5 + weight * (float(method.split("gave ")[1].split(",")[0]) - 0.5), abs=1e-4)


def test_a_target_sensitivity_threshold_is_not_shrunk():
    y = np.repeat([1, 0], 20)
    p = np.concatenate([np.linspace(0.6, 0.99, 20), np.linspace(0.01, 0.7, 20)])
    threshold, method = decide_threshold(y, p, "target_sensitivity", target_sensitivity=0.95)
    assert "highest reaching sensitivity 0.95" in method and threshold > 0.6


class _Version:
    def __init__(self, version, data_version, params_hash="p1", code_version="c1"):
        self.version = version
        self.tags = {"data_version": data_version, "params_hash": params_hash, "code_version": code_version}


def test_retrain_decision_names_what_changed_in_the_training_signature():
    from cxr.release.retrain import decide_retrain
    from cxr.tracking.signature import TrainingSignature

    now = TrainingSignature("abc", "p1", "c1")
    assert decide_retrain(now, None).run
    same = decide_retrain(now, _Version(4, "abc"))
    assert not same.run and "nothing to do" in same.message and same.changed == ()
    data = decide_retrain(TrainingSignature("def", "p1", "c1"), _Version(4, "abc"))
    assert data.run and data.changed == ("data",) and "changed since version 4: data abc -> def" in data.message
    params = decide_retrain(
        TrainingSignature("abc", "p2", "c1"), _Version(4, "abc"), param_changes=["train.l2 0.1 -> 0.02"]
    )
    assert params.changed == ("parameters",) and "parameters (train.l2 0.1 -> 0.02)" in params.message
    code = decide_retrain(TrainingSignature("abc", "p1", "c2"), _Version(4, "abc"))
    assert code.changed == ("code",) and "training code c1 -> c2" in code.message
    old = decide_retrain(now, _Version(4, "abc", params_hash="", code_version=""))  # registered before signatures
    assert old.run and old.changed == ("parameters", "code")
    assert decide_retrain(now, _Version(4, "abc"), force=True).run


def test_the_signature_hashes_what_shapes_the_model_and_nothing_else(tmp_path):
    from cxr.params import load_params
    from cxr.tracking.signature import changed_params, code_version, params_hash, shaping_params

    base = load_params()
    assert params_hash(base) == params_hash(load_params(overrides=["gate.min_f1=0.9", "serve.threads=2"]))
    assert params_hash(base) != params_hash(load_params(overrides=["train.l2=0.02"]))
    logged = {k: str(v) for k, v in base.flat().items()}  # what the pipeline logs to MLflow
    assert changed_params(base, logged) == []
    assert changed_params(load_params(overrides=["train.l2=0.02"]), logged) == ["train.l2 0.1 -> 0.02"]
    assert "ingest.data_dir" not in shaping_params(base)
    (tmp_path / "train.py").write_text("x = 1\n")
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "app.py").write_text("y = 1\n")
    before = code_version(tmp_path)
    (tmp_path / "serving" / "app.py").write_text("y = 2\n")  # the web app does not train
    assert code_version(tmp_path) == before
    (tmp_path / "train.py").write_text("x = 2\n")
    assert code_version(tmp_path) != before


def test_validation_and_test_that_disagree_beyond_their_intervals_are_flagged():
    from cxr.release.gate import disagreement, evidence_from_tags
    from cxr.release.promotion import with_interval

    tags = {"val_f1": "0.857", "val_f1_ci_low": "0.57", "val_f1_ci_high": "1.0", "test_f1": "0.0"}
    tags |= {"test_f1_ci_low": "0.0", "test_f1_ci_high": "0.0"}
    val, test = evidence_from_tags(tags, "val"), evidence_from_tags(tags, "test")
    assert "disagree beyond their 95% intervals" in disagreement(val, test)
    assert with_interval(val) == "0.857 (0.57-1.00)" and with_interval(None) == ""
    overlapping = {**test, "f1": "0.6", "f1_low": "0.3", "f1_high": "0.8"}
    assert disagreement(val, overlapping) == ""
    assert disagreement(val, None) == "" and disagreement({"f1": "1", "f1_low": "nan", "f1_high": "1"}, test) == ""
