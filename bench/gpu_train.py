"""The paper profile's training step on an accelerator: images/s and the share of the chip's bf16 peak.

The paper's model (VGG16 without its top, fine-tuned, + Flatten, Dense 1024, Dense 512, Dense 1; 256 px;
SGD lr 0.01; built by cxr.model.architecture.build_model from the `paper` profile, random weights) is trained on
synthetic batches with mixed precision (bf16). Runs under Keras 3 on whichever backend is installed
(TensorFlow here; JAX or PyTorch on a GPU host without TensorFlow: set KERAS_BACKEND). Work per image
is counted analytically from the layers (multiply-adds x 2 = FLOPs; training = 3 x forward). Last line:
ratio = mixed precision images/s / float32 images/s (same run).

    KERAS_BACKEND=jax python bench/gpu_train.py [--batch 64] [--steps 30] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def forward_flops(model) -> float:
    """FLOPs of one image's forward pass: 2 x the multiply-adds of every Conv2D and Dense layer."""
    import keras

    macs = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * c_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return 2.0 * macs


def _layers(model):
    import keras

    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, keras.Model) else (layer,)


def images_per_second(policy: str, size: int, batch: int, steps: int) -> tuple[float, object]:
    import keras

    from cxr.model.architecture import build_model, compile_model
    from cxr.params import load_params

    keras.mixed_precision.set_global_policy(policy)
    tp = load_params(profile="paper", overrides=[f"train.image_size={size}", "train.weights=none"]).train
    model = build_model(tp)
    compile_model(model, tp)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    for _ in range(3):  # compile and warm up
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss[0] if isinstance(loss, list) else loss))  # wait for the device
    return batch * steps / (time.perf_counter() - start), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    args = parser.parse_args()

    import keras

    backend = keras.backend.backend()
    devices = _devices(backend)
    mixed, model = images_per_second("mixed_bfloat16", args.size, args.batch, args.steps)
    full, _ = images_per_second("float32", args.size, args.batch, args.steps)
    flops = forward_flops(model)
    achieved = mixed * 3 * flops
    print(f"Keras {keras.__version__}, backend {backend}, devices: {devices}")
    print(f"paper model at {args.size} px: {flops / 1e9:.1f} GFLOP forward per image, x3 for a training step")
    print(f"batch {args.batch}, {args.steps} timed steps")
    print(f"float32:        {full:8.1f} images/s")
    print(f"mixed bfloat16: {mixed:8.1f} images/s = {achieved / 1e12:.2f} TFLOP/s,")
    print(f"  {achieved / (args.peak_tflops * 1e12):.1%} of a {args.peak_tflops:g} TFLOP/s bf16 peak")
    print(f"ratio: {mixed / full:.2f}")


def _devices(backend: str) -> str:
    try:
        if backend == "jax":
            import jax

            return ", ".join(str(d) for d in jax.devices())
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        import tensorflow as tf

        return ", ".join(d.name for d in tf.config.list_physical_devices()) or "cpu"
    except Exception as exc:  # report, do not fail the benchmark
        return f"unknown ({exc.__class__.__name__})"


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
