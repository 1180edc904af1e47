import math

from cxr.registry import GateDecision, decide_promotion


def test_passes_above_the_floor_without_a_champion():
    d = decide_promotion(0.8, min_f1=0.7)
    assert d.passed and "no champion" in d.reason


def test_fails_below_the_floor():
    d = decide_promotion(0.69, min_f1=0.7)
    assert not d.passed and "< gate.min_f1" in d.reason


def test_equal_to_the_floor_passes():
    assert decide_promotion(0.7, min_f1=0.7).passed


def test_must_beat_the_champion_by_min_delta():
    assert not decide_promotion(0.85, 0.7, min_delta=0.02, champion_f1=0.84, champion_version="3").passed
    d = decide_promotion(0.86, 0.7, min_delta=0.02, champion_f1=0.84, champion_version="3")
    assert d.passed and "champion v3" in d.reason


def test_nan_f1_never_passes():
    assert not decide_promotion(math.nan, 0.0).passed


def test_decision_round_trips_through_json():
    d = decide_promotion(0.9, 0.5, 0.01, 0.8, "2")
    assert GateDecision.from_json(d.to_json()) == d


class _Version:
    def __init__(self, version, data_version):
        self.version, self.tags = version, {"data_version": data_version}


def test_retrain_decision():
    from cxr.retrain import decide_retrain

    assert decide_retrain("abc", None).run
    same = decide_retrain("abc", _Version(4, "abc"))
    assert not same.run and "version 4 already used data abc" in same.message
    changed = decide_retrain("def", _Version(4, "abc"))
    assert changed.run and "abc (version 4) -> def" in changed.message
    assert decide_retrain("abc", _Version(4, "abc"), force=True).run
