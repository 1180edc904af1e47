"""The web app under bounded concurrent load: the real `cxr serve` (gunicorn) on loopback.

Usage: .venv/bin/python bench/serve_load.py [--model URI] [--requests 48] [--compare-runtime tensorflow]
For 1, 4 and 16 concurrent clients, each level sending the same number of POST /api/predict requests
(a 299x299 PNG from the sample): throughput, p50/p95 latency, errors and 5xx. Baseline: one client,
in the same run. Last line: ratio = throughput at 4 clients / throughput at 1 client.
With --compare-runtime tensorflow: the same model served twice in one command, with its own runtime (a model
trained with `train.runtime: openvino` runs its converted pass) and with TensorFlow's pass
(CXR_RUNTIME=tensorflow), 16 clients each; last line: ratio = its own runtime's req/s / TensorFlow's.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
CXR = str(Path(sys.executable).parent / "cxr")
IMAGE = ROOT / "data" / "covid-radiography-sample" / "COVID" / "COVID-1.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def level(url: str, data: bytes, clients: int, total: int) -> dict:
    def one(_):
        started = time.perf_counter()
        try:
            status = requests.post(url, files={"file": ("x.png", data)}, timeout=120).status_code
        except requests.RequestException:
            status = 0
        return status, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(total)))
    seconds = time.perf_counter() - started
    latencies = np.array([t for _, t in results]) * 1000
    statuses = [s for s, _ in results]
    return {
        "clients": clients,
        "throughput": total / seconds,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "errors": sum(s != 200 for s in statuses),
        "5xx": sum(s >= 500 for s in statuses),
    }


def served(model: str, requests_per_level: int, levels: tuple[int, ...], env: dict) -> list[dict]:
    """`cxr serve` started with `env`, warmed up, measured at each of `levels` concurrent clients, stopped."""
    port = free_port()
    command = [CXR, "serve", "--port", str(port)] + (["--model", model] if model else [])
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None:
                sys.exit(f"cxr serve exited: {Path(log.name).read_text()[-2000:]}")
            try:
                ready = requests.get(f"{base}/readyz", timeout=2).json()
                break
            except requests.RequestException:
                if time.time() > deadline:
                    sys.exit("cxr serve did not become ready in 5 minutes")
                time.sleep(1)
        data = IMAGE.read_bytes()
        for _ in range(5):  # warm-up
            requests.post(f"{base}/api/predict", files={"file": ("x.png", data)}, timeout=120)
        print(f"cxr serve (gunicorn, 1 worker) model {ready['model_uri']}, runtime {ready['runtime']}; "
              f"{requests_per_level} requests per level")  # fmt: skip
        rows = [level(f"{base}/api/predict", data, clients, requests_per_level) for clients in levels]
        for r in rows:
            print(
                f"{r['clients']:>2} clients: {r['throughput']:.1f} req/s, p50 {r['p50']:.0f} ms, "
                f"p95 {r['p95']:.0f} ms, errors {r['errors']}, 5xx {r['5xx']}"
            )
        if any(r["errors"] for r in rows):
            sys.exit("some requests failed")
        return rows
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="", help="MLflow model URI (default: the registry's champion/challenger)")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--compare-runtime", choices=["tensorflow"], default="", help="also serve with this pass")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "CXR_RUNTIME"}
    if args.compare_runtime:
        own = served(args.model, args.requests, (16,), env)[0]
        reference = served(args.model, args.requests, (16,), env | {"CXR_RUNTIME": args.compare_runtime})[0]
        print(f"ratio: {own['throughput'] / reference['throughput']:.2f}")
        return
    rows = served(args.model, args.requests, (1, 4, 16), env)
    print(f"ratio: {rows[1]['throughput'] / rows[0]['throughput']:.2f}")


if __name__ == "__main__":
    main()
