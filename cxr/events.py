"""Progress events: one marked JSON line on stdout per thing a person watching a run wants to know.

Steps print them wherever they run (a subprocess, a container, a Kubeflow pod); the `cxr` command reads
them out of the step logs to draw one line per step and the epoch bar. Lines without the marker are
ordinary log lines.
"""

from __future__ import annotations

import json
import sys

MARKER = "cxr-event "


def emit(event: str, **fields) -> None:
    """Print one event line (flushed, so a reader sees it while the step still runs)."""
    print(MARKER + json.dumps({"event": event, **fields}, default=str), file=sys.stdout, flush=True)


def figure(text: str) -> None:
    """The step's key figure, shown on its line when it ends (e.g. '40 images: 24 train, 8 val, 8 test')."""
    emit("figure", text=text)


def parse(line: str) -> dict | None:
    """The event on a log line (kfp indents streamed lines), or None."""
    start = line.find(MARKER)
    if start < 0:
        return None
    try:
        event = json.loads(line[start + len(MARKER) :])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
