"""Ingestion + validation at scale: one process against one worker per core, on generated images.

Generates --max unique 256x256 grayscale PNGs (two classes), then for each size in --sizes runs ingest
(decode, hash, dHash, re-encode) and the great-expectations validation suite in a fresh process, once
with one process (ingest.workers=1) and once in parallel (ingest.workers=0: one per core): seconds, and
the peak RSS of the main process (which holds the manifest) and of the largest worker. Last line:
ratio = one-process ingest seconds / parallel ingest seconds at the largest size (same run).

    .venv/bin/python bench/ingest_scale.py [--sizes 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(folder: Path, n: int, size: int = 256, seed: int = 0) -> list[Path]:
    """`n` unique smooth grayscale images (a random coarse field upsampled, plus a gradient), two classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 60, size, dtype=np.float32)[None, :]
    paths = []
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 190, (16, 16), dtype=np.uint8))
        field = np.asarray(coarse.resize((size, size), Image.BILINEAR), np.float32) + ramp
        path = folder / ("A" if i % 2 else "B") / f"img-{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(path, compress_level=1)
        paths.append(path)
    return paths


def subset(paths: list[Path], n: int, folder: Path) -> Path:
    """The first `n` images as hard links in a folder of their own."""
    for path in paths[:n]:
        target = folder / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    return folder


def child(data: str, out: str, workers: int) -> None:
    """One measured run: ingest + validate; prints a JSON line."""
    from cxr.data.manifest import ingest, read_manifest
    from cxr.data.validation import validate_manifest
    from cxr.params import IngestParams, load_params

    params = load_params()
    start = time.perf_counter()
    records = ingest(data, out, IngestParams(positive_class="A", workers=workers, split=params.ingest.split))
    ingested = time.perf_counter() - start
    validate = {**params.validate.__dict__, "expected_classes": ("A", "B")}
    outcome = validate_manifest(read_manifest(out), type(params.validate)(**validate), f"{out}-report", 20)
    total = time.perf_counter() - start
    rss = {
        "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print(json.dumps({"n": len(records), "ingest_s": ingested, "total_s": total, "valid": outcome.success, **rss}))


def measure(data: Path, out: Path, workers: int) -> dict:
    code = [sys.executable, __file__, "--child", str(data), str(out), str(workers)]
    done = subprocess.run(code, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"the measured run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return

    from cxr.data.manifest import ingest_workers

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        paths = generate(tmp / "all", max(args.sizes))
        print(f"generated {len(paths):,} unique 256x256 PNGs in {time.perf_counter() - start:.0f} s")
        header = ("images", 8), ("workers", 8), ("ingest s", 9), ("+ validate s", 13), ("main RSS MB", 12)
        print(" ".join(f"{name:>{width}}" for name, width in header) + f" {'worker RSS MB':>14}")
        timings = {}
        for n in sorted(args.sizes):
            data = subset(paths, n, tmp / f"data-{n}")
            for requested in (1, 0):
                workers = ingest_workers(requested, n)
                row = measure(data, tmp / f"out-{n}-{workers}", requested)
                assert row["valid"] and row["n"] == n, row
                timings[(n, requested)] = row["ingest_s"]
                print(
                    f"{n:>8,} {workers:>8} {row['ingest_s']:>9.1f} {row['total_s']:>13.1f} "
                    f"{row['main_mb']:>12.0f} {row['worker_mb']:>14.0f}"
                )
    largest = max(args.sizes)
    print(f"ratio: {timings[(largest, 1)] / timings[(largest, 0)]:.2f}")


if __name__ == "__main__":
    main()
