"""What one model call costs per image as the batch grows: the most that batching can gain on this
machine, whatever the web server around it does.

Usage: .venv/bin/python bench/model_batch_cost.py [--model URI] [--seconds 6]
The served model's whole call (`cxr.inference.scoring.tensor_outputs`: the network, the input gate, the
scope check and the drift projection) on random 8-bit images at its input size, batch sizes 1 to 16, with
NumPy's BLAS limited to serve.blas_threads as `cxr serve` runs. Last line: ratio = seconds per image at
batch 1 / seconds per image at serve.max_batch (above 1: a batch is cheaper per image).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cxr.inference.scoring import tensor_outputs
from cxr.params import load_params
from cxr.serving.cpu_threads import limit_blas_threads
from cxr.serving.model_store import load_served_model


def per_image(classifier, batch: int, seconds: float) -> float:
    size = classifier.config.image_size
    rng = np.random.default_rng(batch)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    tensors = list(classifier.preprocess(images))
    tensor_outputs(classifier, tensors)  # warm-up (a new batch shape)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tensor_outputs(classifier, tensors)
        calls += 1
    return (time.perf_counter() - started) / (calls * batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="", help="MLflow model URI (default: the registry's champion/challenger)")
    parser.add_argument("--seconds", type=float, default=6.0, help="time spent at each batch size")
    args = parser.parse_args()
    params = load_params()
    limit_blas_threads(params.serve.blas_threads)
    model = load_served_model(args.model, params.register.model_name)
    print(f"model {model.uri} (version {model.version or '-'}), {model.classifier.config.image_size} px")
    sizes = sorted({1, 2, 4, 8, 16, params.serve.max_batch})
    cost = {}
    for batch in sizes:
        cost[batch] = per_image(model.classifier, batch, args.seconds)
        print(f"batch {batch:>2}: {cost[batch]:.4f} s per image, {1 / cost[batch]:.2f} images/s")
    print(f"ratio: {cost[1] / cost[params.serve.max_batch]:.2f}")


if __name__ == "__main__":
    main()
