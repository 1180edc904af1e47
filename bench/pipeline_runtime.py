"""The whole pipeline, end to end, with TensorFlow's pass and with the converted int8 pass, one after the other.

Usage: .venv/bin/python bench/pipeline_runtime.py [--data DIR] [--precision int8]
Runs `cxr pipeline run --no-cache` twice on the same data, each into its own fresh MLflow store: TensorFlow's pass
(`train.runtime: tensorflow`, the reference), then `train.runtime: openvino` at `--precision` (int8: what the
default, `auto`, runs on a CPU). The lung segmenter's fit is
taken from the local cache when it is there (`$CXR_CACHE_DIR`), the same for both. Prints each run's wall
time, each step's time and summary (test F1, gate), and last line `ratio:` TensorFlow's wall / the converted
pass's wall (above 1: the converted pass is faster end to end).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CXR = str(Path(sys.executable).parent / "cxr")
STEP = re.compile(r"^\s+[✓✗]\s+(\S+)\s+([\d.]+) s\s+(.*)$")


def run(data: str, overrides: list[str]) -> tuple[float, list[tuple[str, float, str]]]:
    """(wall seconds, [(step, seconds, summary)]) of one pipeline run into a fresh store."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        command = [CXR, "pipeline", "run", "--no-cache", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        command += ["--data", data] if data else []
        for override in overrides:
            command += ["--set", override]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode not in (0, 3):  # 3: the gate refused the model, the run itself worked
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    steps = [(m[1], float(m[2]), m[3]) for m in map(STEP.match, done.stdout.splitlines()) if m]
    return wall, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="", help="dataset folder (default: the bundled sample)")
    parser.add_argument("--precision", default="int8", choices=["fp32", "bf16", "int8"])
    args = parser.parse_args()
    runs = {
        "tensorflow": ["train.runtime=tensorflow"],
        f"openvino {args.precision}": ["train.runtime=openvino", f"train.precision={args.precision}"],
    }
    walls = {}
    for name, overrides in runs.items():
        walls[name], steps = run(args.data, overrides)
        print(f"{name}: {walls[name]:.1f} s")
        for step, seconds, summary in steps:
            print(f"  {step:<10} {seconds:6.1f} s  {summary}")
    tensorflow, converted = walls.values()
    print(f"ratio: {tensorflow / converted:.2f}")


if __name__ == "__main__":
    main()
