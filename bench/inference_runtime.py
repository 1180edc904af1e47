"""The served model's one pass (image batch -> probability and the input gate's block statistics) in
TensorFlow against OpenVINO (fp32, bf16, int8), in the same process, on real X-rays.

    .venv/bin/python bench/inference_runtime.py [--model URI] [--data DIR] [--images N] [--calibration C]
                                                [--repeats R] [--accuracy-control DROP]

The model: a registered version (default: the newest in the local store `make run` leaves). Images: N
of --data (both classes, shuffled) to measure on and C others (default N) to calibrate int8 on (NNCF post-training
quantisation of the convolutions; the statistics and the head stay in floating point). For each runtime:
images/s at batch 1 and 32, the largest and the mean probability difference against TensorFlow, the
labels that change at the model's threshold, the largest relative difference of the gate's features. A
runtime that changes more than 0.5% of the labels is not offered. The SavedModel export and conversion's
seconds and the int8 quantisation's are printed as they happen.
With --accuracy-control, also int8 by NNCF's accuracy-controlled quantisation: convolutions are put back in
floating point, most sensitive first, until the mean probability difference against the floating-point
model on the calibration images is at most DROP (run with bf16 where put back; minutes per layer here).
Last line `ratio:` the best offered runtime's images/s / TensorFlow's, batch 32 (1.00: none is offered).

The int8 settings are the product's (cxr/inference/runtime.py `int8_settings`, `train.precision: int8`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cxr.inference.runtime import int8_settings, quantise

PROJECT = Path(__file__).resolve().parents[1]


def images(data: Path, limit: int, calibrate: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`limit` images to measure on and `calibrate` others to calibrate int8 on: both classes, shuffled (seed 0);
    the measured images are the same whatever `calibrate` is."""
    from cxr.data.images import decode_image

    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))[: limit + calibrate]]
    arrays = [decode_image(p.read_bytes(), str(p))[0] for p in files]
    return arrays[:limit], arrays[limit:]


def newest_model() -> str:
    import mlflow

    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='covid-xray-vgg16'")
    return f"models:/covid-xray-vgg16/{max(int(v.version) for v in versions)}"


def throughput(run, batch: np.ndarray, size: int, repeats: int) -> float:
    """Images per second of `run` over `batch` cut into batches of `size` (after one warm-up call)."""
    run(batch[:size])
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(batch), size):
            run(batch[i : i + size])
    return repeats * len(batch) / (time.perf_counter() - start)


def in_batches(run, batch: np.ndarray, size: int = 32) -> list[np.ndarray]:
    """`run`'s outputs over `batch`, 32 images at a time (a whole set at once does not fit in memory)."""
    parts = [run(batch[i : i + size]) for i in range(0, len(batch), size)]
    return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]


def accuracy_controlled(model, dataset, calibration: np.ndarray, probability, drop: float):
    """int8 by nncf.quantize_with_accuracy_control: the metric is minus the mean probability difference
    against `model` on the calibration images (training images only), allowed to fall by `drop`; it starts
    from the same quantisation as plain int8 (`int8_settings`)."""
    import nncf
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU")
    reference = probability(in_batches(lambda b: [compiled(b)[o] for o in compiled.outputs], calibration))
    chunks = [(calibration[i : i + 16], reference[i : i + 16]) for i in range(0, len(calibration), 16)]

    def metric(candidate, data) -> float:
        gaps = []
        for images, expected in data:
            result = candidate(images)
            gaps.append(np.abs(probability([result[o] for o in candidate.outputs]) - expected))
        return -float(np.mean(np.concatenate(gaps)))

    return nncf.quantize_with_accuracy_control(
        model,
        dataset,
        nncf.Dataset(chunks),
        validation_fn=metric,
        max_drop=drop,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(calibration),
        **int8_settings("advanced_quantization_parameters"),
    )


def openvino_runs(scorer, size: int, calibration: np.ndarray, probability=None, drop: float = 0.0) -> dict:
    """The scorer converted to OpenVINO (through a SavedModel), compiled at fp32 and bf16, and quantised to
    int8 by NNCF's post-training quantisation on `calibration` (training images only)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scorer.export(f"{tmp}/scorer", format="tf_saved_model", verbose=False)
        model = ov.convert_model(f"{tmp}/scorer")
    model.reshape([-1, size, size, 3])
    print(f"SavedModel export and conversion: {time.perf_counter() - start:.1f} s", flush=True)
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    start = time.perf_counter()
    int8 = quantise(model, [calibration])  # the product's int8 (train.precision: int8)
    print(f"int8 quantisation on {len(calibration)} images: {time.perf_counter() - start:.1f} s", flush=True)
    graphs = [("f32", model), ("bf16", model), ("int8", int8)]
    if drop:
        graphs.append(("int8-ac", accuracy_controlled(model, dataset, calibration, probability, drop)))
    runs = {}
    for precision, graph in graphs:
        # int8: the quantised graph, fp32 elsewhere; int8-ac: bf16 where the layers were put back
        hint = {"int8": "f32", "int8-ac": "bf16"}.get(precision, precision)
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(graph, "CPU", config)
        request = compiled.create_infer_request()

        def run(batch, request=request, compiled=compiled):
            result = request.infer({0: batch})
            return [result[compiled.output(i)] for i in range(len(compiled.outputs))]

        runs[f"openvino-{precision}"] = run
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="")
    parser.add_argument("--data", type=Path, default=PROJECT / "data" / "covid-radiography-sample")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--calibration", type=int, default=0, help="images calibrating int8 (default: --images)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--accuracy-control", type=float, default=0.0, metavar="DROP")
    args = parser.parse_args()

    import mlflow

    from cxr.inference.classifier import load_classifier
    from cxr.model.calibration import apply_temperature

    mlflow.set_tracking_uri(f"sqlite:///{PROJECT / 'mlflow' / 'mlflow.db'}")
    uri = args.model or newest_model()
    classifier = load_classifier(uri)
    measured, others = images(args.data, args.images, args.calibration or args.images)
    batch = classifier.preprocess(measured).astype(np.float32)
    size = classifier.config.image_size
    print(f"model {uri}: {size} px, {len(batch)} images from {args.data}")

    def tensorflow(b):
        return [np.asarray(x) for x in classifier.scorer.predict_on_batch(b)]

    def probability(out):
        return apply_temperature(np.asarray(out[0], np.float64).reshape(-1), classifier.config.temperature)

    def probability_of(out):  # a converted model's outputs, the probability found by its shape
        return probability([next(o for o in out if np.asarray(o).reshape(len(out[0]), -1).shape[1] == 1)])

    calibration = classifier.preprocess(others).astype(np.float32)
    converted = openvino_runs(classifier.scorer, size, calibration, probability_of, args.accuracy_control)
    runs = {"tensorflow": tensorflow, **converted}
    outputs = {name: in_batches(run, batch) for name, run in runs.items()}
    reference = outputs["tensorflow"]

    p_ref = probability(reference)
    labels_ref = p_ref >= classifier.config.threshold
    speed = {}
    for name, run in runs.items():
        out = outputs[name]
        # the output order of a converted model follows the SavedModel's signature: match by shape
        stats_out = next(o for o in out if np.asarray(o).reshape(len(batch), -1).shape[1] > 1)
        p = probability_of(out)
        stats = np.asarray(stats_out, np.float64)
        ref_stats = np.asarray(reference[1], np.float64)
        rel = np.max(np.abs(stats - ref_stats) / (np.abs(ref_stats) + 1e-3))
        changed = int(np.sum((p >= classifier.config.threshold) != labels_ref))
        one, many = throughput(run, batch, 1, 1), throughput(run, batch, 32, args.repeats)
        offered = changed <= 0.005 * len(batch)
        speed[name] = many if offered else 0.0
        print(
            f"{name:14s} batch 1 {one:5.1f} img/s  batch 32 {many:5.1f} img/s  max |dp| {np.max(np.abs(p - p_ref)):.1e}"
            f"  mean |dp| {np.mean(np.abs(p - p_ref)):.1e}"
            f"  labels changed {changed}/{len(batch)}  max rel d(features) {rel:.1e}"
            + ("" if offered else "  (not offered: labels change)")
        )
    best = max(v for k, v in speed.items() if k != "tensorflow") or speed["tensorflow"]
    print(f"ratio: {best / speed['tensorflow']:.2f}")


if __name__ == "__main__":
    main()
