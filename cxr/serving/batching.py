"""Dynamic batching, as TF Serving and Triton do it: requests arriving together share one model call.

A request hands its decoded images to the `Batcher` and waits; one worker thread takes the first
waiting request, gathers more until `max_batch` images are queued or `max_wait_ms` has passed since
the first, makes one call, and hands each request its own slice of the outputs. With `max_batch` 1
every request calls the model itself, one at a time (no worker, no wait).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

IDLE_EXIT_S = 60.0  # the worker stops after this long without work (a swapped-out model's worker ends)


@dataclass
class _Pending:
    arrays: list
    done: threading.Event = field(default_factory=threading.Event)
    outputs: tuple | None = None
    error: BaseException | None = None
    batch_size: int = 0


class Batcher:
    """`run(arrays) -> tuple of per-image arrays`, called for many requests at once."""

    def __init__(
        self,
        run: Callable[[list], tuple],
        max_batch: int = 1,
        max_wait_ms: float = 5.0,
        model_lock: threading.Lock | None = None,
    ):
        self.run, self.max_batch, self.max_wait_s = run, max(1, int(max_batch)), max(0.0, max_wait_ms) / 1000
        self.model_lock = model_lock or threading.Lock()  # one model call at a time (shared with Grad-CAM)
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._lock = threading.Lock()  # the worker's start and stop
        self._worker: threading.Thread | None = None

    def __call__(self, arrays: list) -> tuple[tuple, int]:
        """This request's outputs and the number of images in the model call that produced them."""
        if self.max_batch == 1:
            with self.model_lock:
                return self.run(arrays), len(arrays)
        pending = _Pending(arrays)
        with self._lock:
            self._queue.put(pending)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="cxr-batcher", daemon=True)
                self._worker.start()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.outputs, pending.batch_size

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            batch, size = [first], len(first.arrays)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item.arrays)
            self._call(batch, size)

    def _call(self, batch: list[_Pending], size: int) -> None:
        try:
            with self.model_lock:
                outputs = self.run([a for p in batch for a in p.arrays])
            start = 0
            for p in batch:
                end = start + len(p.arrays)
                p.outputs = tuple(np.asarray(o)[start:end] for o in outputs)
                p.batch_size, start = size, end
        except BaseException as exc:  # noqa: BLE001 (every waiting request gets the failure)
            for p in batch:
                p.error = exc
        finally:
            for p in batch:
                p.done.set()
