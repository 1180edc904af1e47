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


def test_a_record_keeps_the_drift_projection_and_an_older_store_gains_the_column(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as db:  # the table as an app without drift detection created it, with one row
        db.execute(
            sa.text(
                "CREATE TABLE cxr_predictions (prediction_id VARCHAR(36) PRIMARY KEY, "
                "created_at DATETIME NOT NULL, model_version VARCHAR(32) NOT NULL, outcome VARCHAR(16) NOT NULL, "
                "positive BOOLEAN, probability FLOAT, gate_score FLOAT, scope_score FLOAT, finding VARCHAR(16), "
                "finding_by VARCHAR(128), finding_at DATETIME)"
            )
        )
        db.execute(
            sa.text(
                "INSERT INTO cxr_predictions (prediction_id, created_at, model_version, outcome) "
                "VALUES ('old', '2026-11-30 10:00:00', '1', 'Normal')"
            )
        )
    store = PredictionRecords(url)
    store.add("2", {**row("COVID"), "projection": [0.5, -1.25]}, "COVID")
    old, new = store.rows()
    assert old["prediction_id"] == "old" and old["projection"] is None and new["projection"] == [0.5, -1.25]


def test_since_takes_minutes_hours_or_days_and_says_what_it_wants():
    assert rec.since_time("") is None
    ago = datetime.datetime.now(datetime.UTC) - rec.since_time("24h")
    assert abs(ago - datetime.timedelta(hours=24)) < datetime.timedelta(seconds=5)
    with pytest.raises(CxrError, match="--since 'yesterday' is not a duration; give e.g. 30m, 24h or 7d"):
        rec.since_time("yesterday")


def test_each_film_keeps_its_site_and_a_site_is_validated_by_its_newest_drift_check(store):
    store.add("3", row("COVID"), "COVID", "St Elsewhere")
    store.add("3", row("Normal"), "COVID", "")
    assert [r["site"] for r in store.rows()] == ["St Elsewhere", None]
    assert [r["site"] for r in store.rows(site="")] == [None]  # '' : the films no site was named for
    assert len(store.rows(site="St Elsewhere")) == 1
    assert not store.site_validated("St Elsewhere", "3")  # never checked
    store.record_site_check("St Elsewhere", "3", 40, 0.4, drift=False)
    assert store.site_validated("St Elsewhere", "3")
    assert not store.site_validated("St Elsewhere", "4") and not store.site_validated("", "3")  # per version, site
    store.record_site_check("St Elsewhere", "3", 60, 0.001, drift=True)
    assert not store.site_validated("St Elsewhere", "3")  # the newest check decides
    assert [c["drift"] for c in store.site_checks()] == [False, True]
