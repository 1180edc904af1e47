"""The web app's prediction records (bounded, numbers only) and the in-use figures computed from them."""

import datetime

import pytest

from cxr.errors import CxrError
from cxr.evaluation.live import performance_by_version
from cxr.serving import records as rec
from cxr.serving.records import PREDICTIONS, PredictionRecords, UnknownPrediction


def row(label: str | None, probability: float | None = 0.7) -> dict:
    return {"label": label, "probability": probability, "ood_score": 3.5, "scope_score": 0.9}


@pytest.fixture
def store(tmp_path):
    return PredictionRecords(f"sqlite:///{tmp_path / 'records.db'}", max_rows=5, max_age_days=1)


def test_a_record_holds_numbers_only_and_takes_one_of_three_findings(store):
    pid = store.add("3", row("COVID", 0.81), "COVID")
    store.record_finding(pid, "not_covid", "dr-who")
    (kept,) = store.rows()
    assert set(kept) == {c.name for c in PREDICTIONS.columns}  # no column for pixels, file names or DICOM fields
    assert (kept["outcome"], kept["positive"], kept["probability"], kept["finding"]) == (
        "COVID",
        True,
        0.81,
        "not_covid",
    )
    with pytest.raises(CxrError, match="not one of covid, not_covid, unsure"):
        store.record_finding(pid, "probably", "dr-who")
    with pytest.raises(UnknownPrediction, match="No prediction x is on record"):
        store.record_finding("x", "covid", "dr-who")


def test_the_store_keeps_the_newest_rows_within_the_age_limit(store, monkeypatch):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    monkeypatch.setattr(rec, "_now", lambda: old)
    store.add("1", row("Normal"), "COVID")
    monkeypatch.undo()
    ids = [store.add("1", row("Normal"), "COVID") for _ in range(7)]
    store.prune()
    assert [r["prediction_id"] for r in store.rows()] == ids[-5:]  # the 2-day-old one and the oldest two went


def test_in_use_figures_per_version_from_findings():
    rows = [
        {"model_version": "1", "positive": True, "finding": "covid"},
        {"model_version": "1", "positive": True, "finding": "not_covid"},
        {"model_version": "1", "positive": False, "finding": "not_covid"},
        {"model_version": "1", "positive": False, "finding": "covid"},
        {"model_version": "1", "positive": False, "finding": "unsure"},
        {"model_version": "1", "positive": None, "finding": None},
        {"model_version": "2", "positive": True, "finding": None},
    ]
    result = performance_by_version(rows)
    one = result["1"]
    assert one["counts"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 1, "unsure": 1, "refused": 1, "no_finding": 0}
    assert one["sensitivity"]["value"] == 0.5 and one["sensitivity"]["n"] == 2
    low, high = one["ppv"]["ci95"]
    assert 0 < low < 0.5 < high < 1  # Wilson interval on 1 of 2
    assert result["2"]["sensitivity"] == {"value": None, "ci95": [None, None], "n": 0}
