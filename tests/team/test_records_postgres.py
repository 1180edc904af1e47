"""The web app's prediction records on a real PostgreSQL, as the cluster's replicas share them."""

import multiprocessing

import pytest

pytestmark = pytest.mark.slow
REPLICAS = 8


def open_records(url: str, barrier, errors) -> None:
    from cxr.serving.records import PredictionRecords

    barrier.wait()  # every replica sets the schema up at the same moment
    try:
        PredictionRecords(url)
    except Exception as exc:  # noqa: BLE001 (reported to the test, which names it)
        errors.put(f"{exc.__class__.__name__}: {exc}")


def test_replicas_starting_together_on_an_empty_database_all_open_it_and_share_rows(postgres):
    from cxr.serving.records import PredictionRecords

    url = postgres()
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(REPLICAS), context.Queue()
    replicas = [context.Process(target=open_records, args=(url, barrier, errors)) for _ in range(REPLICAS)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(timeout=120)
    failed = [errors.get() for _ in range(errors.qsize())]
    assert not failed and all(r.exitcode == 0 for r in replicas), failed
    one, other = PredictionRecords(url), PredictionRecords(url)
    made = one.add("3", {"label": "COVID", "probability": 0.9}, "COVID")
    other.record_finding(made, "covid", "dr-a")  # a finding posted to the other replica
    (row,) = one.rows()
    assert row["prediction_id"] == made and row["finding"] == "covid" and row["finding_by"] == "dr-a"
