"""Dynamic batching: concurrent requests share one model call and get exactly what one-at-a-time gives."""

import threading

import numpy as np
import pytest

from cxr.inference.classifier import load_model_dir
from cxr.serving.batching import Batcher
from cxr.serving.model_store import ServedModel
from tests.conftest import SAMPLE, train_on_sample

pytestmark = pytest.mark.slow  # fits a network


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return load_model_dir(train_on_sample(tmp_path_factory.mktemp("batching")))


def uploads(n: int) -> list[bytes]:
    files = sorted((SAMPLE / "COVID").glob("*.png"))[: n // 2] + sorted((SAMPLE / "Normal").glob("*.png"))[: n - n // 2]
    return [f.read_bytes() for f in files]


def assess_concurrently(served: ServedModel, data: list[bytes]) -> tuple[list[dict], list[dict]]:
    rows, timings = [None] * len(data), [{} for _ in data]
    start = threading.Barrier(len(data))

    def one(i: int) -> None:
        start.wait()
        rows[i] = served.assess(data[i], False, timings[i])[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return rows, timings


def test_concurrent_requests_share_model_calls_and_get_what_one_at_a_time_gives(classifier):
    data = uploads(12)
    alone = ServedModel("m", "1", "d", classifier).set_batching(1, 0)
    expected = [alone.assess(d, False)[0] for d in data]
    batched = ServedModel("m", "1", "d", classifier).set_batching(8, 50)
    rows, timings = assess_concurrently(batched, data)
    assert max(t["batch_size"] for t in timings) > 1  # some requests did share a call
    assert all(t["batch_size"] <= 8 for t in timings)
    for got, want in zip(rows, expected, strict=True):
        assert got["label"] == want["label"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)


def test_a_failing_model_call_fails_every_request_that_shared_it():
    def broken(arrays):
        raise RuntimeError("model crashed")

    batcher = Batcher(broken, max_batch=4, max_wait_ms=50)
    errors = []

    def one():
        try:
            batcher([np.zeros((4, 4))])
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == ["model crashed"] * 3


def test_each_request_gets_its_own_slice_of_the_batch():
    batcher = Batcher(lambda arrays: (np.array([a.sum() for a in arrays]),), max_batch=16, max_wait_ms=50)
    results = {}

    def one(i: int):
        results[i] = batcher([np.full((2, 2), i), np.full((2, 2), 100 + i)])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i, ((sums,), size) in results.items():
        assert list(sums) == [4 * i, 4 * (100 + i)] and 2 <= size <= 16


def test_the_serving_process_limits_blas_threads_and_zero_keeps_the_default():
    from threadpoolctl import threadpool_info, threadpool_limits

    from cxr.serving.cpu_threads import limit_blas_threads

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    with threadpool_limits(limits=None):  # restores this process's threads afterwards
        limit_blas_threads(0)
        assert blas_threads() == before
        limit_blas_threads(1)
        assert blas_threads() == {1}
    assert blas_threads() == before
