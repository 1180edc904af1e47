"""The serving process's BLAS threads: throughput at 16 concurrent clients, one model call per request
(serve.max_batch=1), with NumPy's BLAS limited to serve.blas_threads (as `cxr serve` runs) against the
library's default threads, in the same process.

Usage: .venv/bin/python bench/serve_blas_threads.py [--model URI] [--requests 96] [--rounds 2]
One loaded model behind the real Flask app on loopback (as bench/serve_batching.py serves it); rounds
alternate between the two settings, switched at run time with threadpoolctl. It also checks that both
settings give every image the same label and probability (to 1e-5). Last line: ratio = throughput with
the limit / throughput with the default.
"""

from __future__ import annotations

import argparse

from serve_batching import CLIENTS, compare, load, sample_images, start
from threadpoolctl import threadpool_info

from cxr.params import load_params
from cxr.serving.app import create_app
from cxr.serving.cpu_threads import limit_blas_threads
from cxr.serving.model_store import load_served_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="", help="MLflow model URI (default: the registry's champion/challenger)")
    parser.add_argument("--requests", type=int, default=96, help="requests per round and setting")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    params = load_params()
    images = sample_images()
    model = load_served_model(args.model, params.register.model_name).set_batching(1, 0)
    url, server = start(create_app(model, max_inflight=64))
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    default = max(i["num_threads"] for i in blas)
    limited = params.serve.blas_threads
    settings = {f"BLAS threads {limited} (serve.blas_threads)": limited, f"BLAS threads {default} (default)": default}
    load(url, images, CLIENTS)  # warm-up
    print(
        f"model {model.uri} (version {model.version or '-'}), {CLIENTS} clients, {len(images)} sample images, one "
        f"model call per request, {args.requests} requests x {args.rounds} rounds per setting; BLAS: "
        + ", ".join(f"{i['internal_api']} {i['version']}" for i in blas)
    )

    def setting(threads: int):
        def prepare() -> str:
            limit_blas_threads(threads)  # threadpoolctl sets the count, up as well as down
            return url

        return prepare

    ratio = compare({name: setting(threads) for name, threads in settings.items()}, images, args.requests, args.rounds)
    server.shutdown()
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
