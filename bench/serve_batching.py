"""Dynamic batching in the web app: throughput at 16 concurrent clients with batching on
(serve.max_batch, serve.max_wait_ms from params.yaml) against serve.max_batch=1, in the same process,
with NumPy's BLAS threads limited to serve.blas_threads as `cxr serve` limits them.

Usage: .venv/bin/python bench/serve_batching.py [--model URI] [--requests 96] [--rounds 2]
The same loaded model is served by two apps (the real Flask app over werkzeug's threaded server on
loopback), one batching and one not; 16 client threads post the sample's images to each, alternating
rounds so drift on the machine hits both alike. It also checks that every image got the same label and
probability (to 1e-5) from both. Last line: ratio = batched throughput / one-call-per-request throughput.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from cxr.params import load_params
from cxr.serving.app import create_app
from cxr.serving.cpu_threads import limit_blas_threads
from cxr.serving.model_store import ServedModel, load_served_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "covid-radiography-sample"
CLIENTS = 16


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # no access log (as the app's gunicorn runs)
        pass


def start(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/api/predict", server


def load(url: str, images: list[bytes], total: int) -> tuple[float, dict[int, tuple]]:
    def one(i: int):
        answer = requests.post(url, files={"file": ("x.png", images[i % len(images)])}, timeout=300)
        answer.raise_for_status()
        body = answer.json()
        return i % len(images), (body["label"], body["probability"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = dict(pool.map(one, range(total)))
    return total / (time.perf_counter() - started), results


def sample_images() -> list[bytes]:
    """About 32 of the bundled sample's images, both classes."""
    files = sorted(SAMPLE.glob("*/*.png"))
    return [p.read_bytes() for p in files[:: max(1, len(files) // 32)]]


def compare(settings: dict, images: list[bytes], requests: int, rounds: int) -> float:
    """Alternating rounds of `requests` at CLIENTS clients per setting (name -> a callable that puts the
    setting in place and returns the URL to post to); prints each setting's throughput and whether all
    gave the same answers; returns the first setting's throughput over the second's."""
    throughput, answers = {name: [] for name in settings}, {name: {} for name in settings}
    for _ in range(rounds):
        for name, prepare in settings.items():
            rate, results = load(prepare(), images, requests)
            throughput[name].append(rate)
            answers[name].update(results)
    width = max(len(name) for name in settings)
    for name, rates in throughput.items():
        print(f"{name:>{width}}: {sum(rates) / len(rates):.2f} req/s ({', '.join(f'{r:.2f}' for r in rates)})")
    a, b = answers.values()
    same = all(a[i][0] == b[i][0] and abs(a[i][1] - b[i][1]) <= 1e-5 for i in a)
    print(f"identical predictions (label, probability to 1e-5) on {len(a)} images: {same}")
    first, second = (sum(rates) / len(rates) for rates in throughput.values())
    return first / second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="", help="MLflow model URI (default: the registry's champion/challenger)")
    parser.add_argument("--requests", type=int, default=96, help="requests per round and configuration")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. serve.max_batch=4")
    args = parser.parse_args()
    params = load_params(overrides=args.set)
    serve = params.serve
    images = sample_images()
    limit_blas_threads(serve.blas_threads)  # as `cxr serve` runs (bench/serve_blas_threads.py)
    model = load_served_model(args.model, params.register.model_name)
    # two apps over the same loaded classifier and its one lock (one Keras call at a time across both)
    on, off = (
        ServedModel(
            model.uri, model.version, model.data_version, model.classifier, gradcam=model.gradcam, lock=model.lock
        )
        for _ in range(2)
    )
    on.set_batching(serve.max_batch, serve.max_wait_ms)
    off.set_batching(1, 0)
    urls, servers = {}, []
    for name, served in (("batched", on), ("one call per request", off)):
        url, server = start(create_app(served, max_inflight=64))
        urls[name] = url
        servers.append(server)
        load(url, images, CLIENTS)  # warm-up
    print(
        f"model {model.uri} (version {model.version or '-'}), {CLIENTS} clients, {len(images)} sample images, "
        f"{args.requests} requests x {args.rounds} rounds per configuration; batching: max_batch "
        f"{serve.max_batch}, max_wait_ms {serve.max_wait_ms:g}"
    )
    ratio = compare({name: lambda url=url: url for name, url in urls.items()}, images, args.requests, args.rounds)
    for server in servers:
        server.shutdown()
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
