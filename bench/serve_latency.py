"""Latency of one prediction through the web app's HTTP API, against the bare model call as baseline.

Usage: .venv/bin/python bench/serve_latency.py [--model URI] [--requests 60]
Prints p50/p95 per image kind for POST /api/predict (with and without the Grad-CAM heatmap) and the
in-process model call on the same decoded image; last line: ratio = HTTP / model call for the PNG.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="")
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()

    import mlflow
    from werkzeug.serving import make_server

    from cxr.data.images import decode_image
    from cxr.serving.app import create_app
    from cxr.serving.model_store import load_served_model
    from cxr.tracking import runs as tracking

    mlflow.set_tracking_uri(tracking.resolve_tracking_uri())
    served = load_served_model(args.model)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, create_app(served), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/predict"

    import data_store

    images = {
        "PNG 299x299 8-bit": (ROOT / "data/covid-radiography-sample/COVID/COVID-1.png").read_bytes(),
        "DICOM 1841x1955 15-bit": (Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm").read_bytes(),
    }
    print(
        f"model {served.uri} (version {served.version or '-'}), image_size {served.classifier.config.image_size}, "
        f"{args.requests} requests each, sequential, one client"
    )
    ratios = []
    for kind, data in images.items():
        array = decode_image(data, kind)[0]
        model_times, http_times, heat_times = [], [], []
        for _ in range(5):  # warm-up
            requests.post(url, files={"file": ("x", data)})
        for _ in range(args.requests):
            t = time.perf_counter()
            served.predict([array])
            model_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert requests.post(url, files={"file": ("x", data)}).status_code == 200
            http_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert requests.post(url + "?heatmap=true", files={"file": ("x", data)}).status_code == 200
            heat_times.append(time.perf_counter() - t)
        ratio = statistics.median(http_times) / statistics.median(model_times)
        ratios.append(ratio)
        print(
            f"{kind}: HTTP p50 {percentile(http_times, 50):.1f} ms p95 {percentile(http_times, 95):.1f} ms | "
            f"with heatmap p50 {percentile(heat_times, 50):.1f} ms p95 {percentile(heat_times, 95):.1f} ms | "
            f"model call alone p50 {percentile(model_times, 50):.1f} ms | HTTP/model ratio {ratio:.2f}"
        )
    server.shutdown()
    print(f"ratio: {ratios[0]:.2f}")  # HTTP / model call, PNG


if __name__ == "__main__":
    main()
