"""The frozen base's one pass (image batch -> the gate's block statistics and the head's input) in OpenVINO.

The base is frozen in the CPU profile, so what it makes of an image is fixed before the head is fitted: the
pass is converted once per model (`convert`), int8 by NNCF's post-training quantisation calibrated on
training images only, saved beside the Keras model (`EXTRACTOR_FILE`) and loaded by training's feature pass,
evaluation, the checks and serving (`Extractor`). The head (standardisation and the dense layers) stays in
Keras on the pass's output, and TensorFlow stays the reference path (`train.runtime: tensorflow`).

int8 quantises the 13 convolutions' inputs and weights only. NNCF's defaults would also put a per-tensor
8-bit grid on every step of the block statistics (mean, deviation, log, concatenation) and on the head's
input, which the linear head reads directly: that changed 13 of 64 labels where the convolutions alone
change about 1 in 500 (docs/performance.md). Full bias correction, activation ranges from the calibration
images' extremes (MINMAX) and the mixed preset each halved the remaining error.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet

from cxr.errors import CxrError
from cxr.params import CHOICES

EXTRACTOR_FILE = "extractor.xml"  # the converted pass in the model folder (its weights: extractor.bin beside it)
WEIGHTS_FILE = "extractor.bin"
PRECISIONS = ("fp32", "bf16", "int8")
STATISTICS_OPS = ["ReduceMean", "Subtract", "Multiply", "Power", "Concat", "Log", "Add", "MatMul", "Maximum"]
# training images calibrating int8: NNCF's time grows with them (statistics and bias correction: 18 s for 100,
# 89 s for 500 at 176 px), and 100 changed no more labels than 500 (0 and 1 of 500: docs/performance.md)
CALIBRATION_IMAGES = 100
RUNTIME_ENV = "CXR_RUNTIME"  # the served pass, process-wide: model (the model's own) | tensorflow (serve.runtime)
SERVED_RUNTIMES = CHOICES[("serve", "runtime")]  # what $CXR_RUNTIME may say: serve.runtime's values


def served_runtime() -> str:
    """The pass a loaded model runs: $CXR_RUNTIME (model | tensorflow; `cxr serve` sets it from serve.runtime
    when unset), default model."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower() or "model"
    if value not in SERVED_RUNTIMES:
        raise CxrError(f"${RUNTIME_ENV} is {value!r}; set it to {' or '.join(SERVED_RUNTIMES)}, or unset it.")
    return value


def int8_settings(advanced: str = "advanced_parameters") -> dict:
    """nncf.quantize's keywords; `advanced`: the name the advanced parameters take (quantize_with_accuracy_control
    calls them advanced_quantization_parameters)."""
    return {
        "preset": nncf.QuantizationPreset.MIXED,
        "fast_bias_correction": False,
        "ignored_scope": nncf.IgnoredScope(types=STATISTICS_OPS, validate=False),  # some graphs lack a type
        advanced: AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
    }


def to_openvino(keras_model, size: int):
    """`keras_model` (one image input) as an OpenVINO model, through a SavedModel, batch left free."""
    with tempfile.TemporaryDirectory() as tmp:
        keras_model.export(f"{tmp}/model", format="tf_saved_model", verbose=False)
        model = ov.convert_model(f"{tmp}/model")
    model.reshape([-1, size, size, 3])
    return model


def quantise(model, calibration: Iterable[np.ndarray]):
    """`model` in int8 (convolutions only), calibrated on `calibration`'s batches (training images only)."""
    logging.getLogger("nncf").setLevel(logging.WARNING)  # not a line per operation it leaves in floating point
    images = [image[None] for batch in calibration for image in np.asarray(batch, np.float32)]
    if not images:
        raise ValueError("int8 needs calibration images; none were given")
    return nncf.quantize(model, nncf.Dataset(images), subset_size=len(images), **int8_settings())


def convert(extractor, size: int, precision: str, calibration: Iterable[np.ndarray] = ()):
    """The Keras pass `extractor` (build_scorer(model, pooled=True)) as an OpenVINO model at `precision`
    (bf16 is a compile-time hint: the saved graph is fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    model = to_openvino(extractor, size)
    return quantise(model, calibration) if precision == "int8" else model


def save(model, folder: Path) -> Path:
    """The converted pass as `folder`/extractor.xml + extractor.bin (fp32 weights stay fp32)."""

    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / EXTRACTOR_FILE), compress_to_fp16=False)
    return folder / EXTRACTOR_FILE


class Extractor:
    """A converted pass compiled for this CPU: batch -> [gate statistics, head input], as the Keras pass
    gives them (`predict_on_batch`, and `predict` over a tf.data dataset of image batches or (images, labels))."""

    def __init__(self, model, precision: str):
        hint = "bf16" if precision == "bf16" else "f32"  # int8: the quantised graph, fp32 around it
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        self.precision = precision
        self.base_weights: list | None = None  # the Keras base's weights it was converted from (training sets them)
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self.outputs = sorted(self.compiled.outputs, key=lambda o: min(o.get_names()))  # output_0, output_1

    @classmethod
    def load(cls, path: Path, precision: str) -> Extractor:
        """From a saved pass (`save`: extractor.xml, extractor.bin beside it)."""
        return cls(ov.Core().read_model(str(path)), precision)

    def predict_on_batch(self, batch: np.ndarray) -> list[np.ndarray]:
        # a request per call: the web app's threads may call at once
        result = self.compiled.create_infer_request().infer({0: np.ascontiguousarray(batch, np.float32)})
        return [np.asarray(result[o]) for o in self.outputs]

    def predict(self, dataset, verbose: int = 0) -> list[np.ndarray]:
        batches = (element[0] if isinstance(element, tuple) else element for element in dataset)  # (x, y) or x
        parts = [self.predict_on_batch(np.asarray(x)) for x in batches]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]
