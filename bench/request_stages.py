"""Where one web-app request's time goes: each stage of `ServedModel.assess` on one film, timed apart.

Usage: .venv/bin/python bench/request_stages.py [--model URI] [--repeats 30] [--image PATH]
Stages, in the order a request runs them: decode, lung segmentation (the U-Net and its mask clean-up), the
lung view, the resize to the model's input, the model's pass (the converted pass and the head for a model
with `train.runtime: openvino`, else TensorFlow's), and the checks on its statistics (input gate, scope,
drift). Milliseconds per film, mean over `--repeats` calls after a warm-up, NumPy's BLAS limited as `cxr serve`
runs it. Baseline, in the same process: the segmenter's U-Net called eagerly (layer by layer), as against
its compiled graph (`Segmenter.forward`). Last line: ratio = eager U-Net call / compiled U-Net call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cxr.data.images import resize_and_scale
from cxr.inference.scoring import prepare
from cxr.model.block_stats import feature_statistics
from cxr.params import load_params
from cxr.serving.cpu_threads import limit_blas_threads
from cxr.serving.model_store import load_served_model

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "data" / "covid-radiography-sample" / "COVID" / "COVID-1.png"


def timed(call, repeats: int):
    """(mean milliseconds per call after one warm-up call, the last call's result)."""
    out = call()
    started = time.perf_counter()
    for _ in range(repeats):
        out = call()
    return (time.perf_counter() - started) / repeats * 1000, out


def stages(classifier, data: bytes, repeats: int) -> dict[str, float]:
    """Milliseconds of each stage of one request on `data`."""
    ms = {}
    ms["decode"], (_, arrays, _) = timed(lambda: prepare([("the film", data)], strict=True), repeats)
    ms["segment"], masks = timed(lambda: classifier.lung_masks(arrays), repeats)
    ms["lung view"], views = timed(lambda: classifier.view(arrays, masks), repeats)
    size = classifier.config.image_size
    ms["resize"], batch = timed(lambda: np.stack([np.asarray(resize_and_scale(v, size)) for v in views]), repeats)
    ms["model pass"], (_, stats) = timed(lambda: classifier.one_pass(batch), repeats)
    features = feature_statistics(stats)
    checks = (classifier.ood_scores, classifier.scope_scores, classifier.projections)
    ms["checks"], _ = timed(lambda: [check(features) for check in checks], repeats)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="", help="MLflow model URI (default: the registry's champion/challenger)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--image", type=Path, default=IMAGE, help="the film sent (default: a bundled COVID PNG)")
    args = parser.parse_args()
    params = load_params()
    limit_blas_threads(params.serve.blas_threads)
    served = load_served_model(args.model, params.register.model_name)
    classifier = served.classifier
    size = classifier.config.image_size
    print(f"model {served.uri} (version {served.version or '-'}), {size} px, runtime {classifier.runtime}")
    ms = stages(classifier, args.image.read_bytes(), args.repeats)
    for stage, value in ms.items():
        print(f"{stage:<11} {value:7.1f} ms")
    print(f"{'total':<11} {sum(ms.values()):7.1f} ms")
    segmenter = classifier.segmenter
    if segmenter is None:
        raise SystemExit("this model has no lung segmenter: nothing to compare")
    batch = np.zeros((1, segmenter.size, segmenter.size, 1), np.float32)
    eager, _ = timed(lambda: np.asarray(segmenter.model(batch, training=False)), args.repeats)
    compiled, _ = timed(lambda: np.asarray(segmenter.forward(batch)), args.repeats)
    print(f"U-Net alone: eager {eager:.1f} ms, compiled {compiled:.1f} ms")
    print(f"ratio: {eager / compiled:.2f}")


if __name__ == "__main__":
    main()
