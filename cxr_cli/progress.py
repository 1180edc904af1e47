"""What a person sees while the pipeline runs: one line per step and the epoch bar.

Everything the run prints (kfp's executor dumps, the steps' logs, TensorFlow and MLflow warnings, from
this process and every step it starts) goes to a log file; `StepView` reads the same lines and keeps
the terminal to one line per step, drawn from kfp's task lines and the steps' `cxr.events`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cxr import events

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TASK_START = re.compile(r"Executing task '([^']+)'")
TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
CACHE_HIT = re.compile(r"Task (\S+) cache hit")
BAR_WIDTH = 20


@dataclass
class StepLine:
    name: str
    started: float
    status: str = ""
    seconds: float = 0.0
    figure: str = ""


class StepView:
    """Feed it the run's output line by line; it draws the steps on `out`.

    On a terminal a running step's line is redrawn in place (the epoch bar); elsewhere (CI, a pipe)
    each step prints one line when it ends.
    """

    def __init__(self, out: TextIO, tty: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.clock = clock
        self.steps: list[StepLine] = []
        self.current: StepLine | None = None
        self.epochs: list[dict] = []

    def feed(self, line: str) -> None:
        event = events.parse(line)
        if event is not None:
            self._event(event)
            return
        text = ANSI.sub("", line)
        if match := TASK_START.search(text):
            self._start(match.group(1))
        elif match := TASK_END.search(text):
            self._end(match.group(1), match.group(2))
        elif match := CACHE_HIT.search(text):
            self._cached(match.group(1))

    def _cached(self, name: str) -> None:
        """A step kfp reused from an earlier run (same inputs: data version, parameters, code)."""
        self.steps.append(StepLine(name, self.clock(), "SUCCESS"))
        self._draw(f"  ✓ {name:<10} cached    reused: same data version, parameters and code", final=True)

    def _start(self, name: str) -> None:
        self.current = StepLine(name, self.clock())
        self.epochs = []
        self.steps.append(self.current)
        self._draw(f"  … {name}")

    def _event(self, event: dict) -> None:
        step = self.current
        if step is None:
            return
        if event["event"] == "figure":
            step.figure = str(event.get("text", ""))
        elif event["event"] == "epoch":
            self.epochs.append(event)
            if self.tty:
                self._draw(f"  … {step.name:<10} {self._bar()}")

    def _bar(self) -> str:
        last = self.epochs[-1]
        total = int(last.get("epochs") or len(self.epochs))
        done = int(last.get("epoch", len(self.epochs)))
        filled = round(BAR_WIDTH * done / max(total, 1))
        fold = f"fold {last['fold']}/{last['folds']} " if "fold" in last else ""
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fold}epoch {done}/{total}  {self._best()}"

    def _best(self) -> str:
        """The epoch training keeps: the lowest validation cross-entropy (val_bce; val_loss from a model
        compiled without it)."""
        key = "val_bce" if any("val_bce" in e for e in self.epochs) else "val_loss"
        scored = [e for e in self.epochs if key in e and "fold" not in e]  # a fold's is only watched
        if not scored:
            return ""
        best = min(scored, key=lambda e: e[key])
        return f"best {key} {best[key]:.3f} at epoch {best['epoch']}"

    def _end(self, name: str, status: str) -> None:
        step = self.current if self.current is not None and self.current.name == name else StepLine(name, self.clock())
        step.status = status
        step.seconds = self.clock() - step.started
        if not step.figure and self.epochs:
            n = len(self.epochs)
            step.figure = f"{n} epoch{'s' if n != 1 else ''}, {self._best()}"
        mark = "✓" if status == "SUCCESS" else "✗"
        figure = step.figure if status == "SUCCESS" else f"{status.lower()}{': ' + step.figure if step.figure else ''}"
        self._draw(f"  {mark} {name:<10} {step.seconds:6.1f} s  {figure}", final=True)
        self.current = None

    def _draw(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
        elif final:
            self.out.write(text + "\n")
        self.out.flush()

    @property
    def failed_step(self) -> str:
        return next((s.name for s in self.steps if s.status and s.status != "SUCCESS"), "")


@contextlib.contextmanager
def captured(log_path: Path, on_line: Callable[[str], None]) -> Iterator[None]:
    """Send everything written to this process's stdout and stderr, and so to the children it starts,
    into `log_path`, calling `on_line` with each line as it arrives."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr

    def pump() -> None:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as pipe, open(log_path, "a") as log:
            for line in pipe:
                log.write(line)
                log.flush()
                with contextlib.suppress(Exception):  # a drawing bug must not stall the run
                    on_line(line)

    reader = threading.Thread(target=pump, name="cxr-log-pump", daemon=True)
    reader.start()
    os.dup2(write_fd, 1)  # the fds: what child processes and C libraries write
    os.dup2(write_fd, 2)
    os.close(write_fd)
    # and Python's streams, line-buffered so each line arrives when it is printed
    sys.stdout = open(os.dup(1), "w", encoding="utf-8", errors="replace", buffering=1)
    sys.stderr = open(os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.close()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        reader.join(timeout=30)


def terminal(to_stderr: bool) -> TextIO:
    """A stream on the real terminal (or whatever stdout/stderr is now) that outlives `captured`."""
    return os.fdopen(os.dup(2 if to_stderr else 1), "w", encoding="utf-8", buffering=1)
