"""The MLflow model: the trained Keras network wrapped with the shared decoding and preprocessing.

Input: a DataFrame with an `image` column of raw file bytes (PNG, JPEG or DICOM). Output: a DataFrame
with `probability` (of the positive class), `label` (at the recorded decision threshold),
`in_distribution`, `ood_score` and `reason`: an image the input gate (cxr/safety/input_gate.py) or its DICOM header
(cxr/safety/dicom_scope.py) refuses, or that is not a readable image, gets no probability and no label, and
the reason why. MLServer's MLflow runtime serves this model as it is (cxr/serving/open_inference.py).
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import keras
import mlflow.pyfunc
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from PIL import Image

import cxr
import cxr.model.layers  # noqa: F401 (registers the custom layers before a model is loaded)
from cxr.data.images import resize_and_scale
from cxr.data.lung_view import LUNG_VIEWS, bounding_box, lung_view
from cxr.errors import CxrError, first_line
from cxr.inference.runtime import EXTRACTOR_FILE, WEIGHTS_FILE, Extractor, served_runtime
from cxr.inference.scoring import assess
from cxr.model.block_stats import build_scorer, feature_statistics, head_of
from cxr.model.calibration import apply_temperature
from cxr.model.config import CONFIG_FILE, MODEL_FILE, ModelConfig
from cxr.model.segmenter import SEGMENTER_FILE, Segmenter
from cxr.safety.drift import DRIFT_FILE, DriftReference
from cxr.safety.input_gate import OOD_FILE, InputGate
from cxr.safety.population import SCOPE_FILE, ScopeCheck


class XrayClassifier(mlflow.pyfunc.PythonModel):
    """Loads the Keras model once; predictions reuse one compiled predict function."""

    def load_context(self, context):
        keys = ("ood", "scope", "drift", "lungs", "extractor")
        gate, scope, drift, lungs, extractor = (context.artifacts.get(key) for key in keys)
        self.load(
            Path(context.artifacts["keras_model"]),
            ModelConfig.from_file(context.artifacts["config"]),
            Path(gate) if gate else None,
            Path(scope) if scope else None,
            Path(drift) if drift else None,
            Path(lungs) if lungs else None,
            Path(extractor) if extractor else None,
        )

    def load(
        self,
        keras_path: Path,
        config: ModelConfig,
        ood_path: Path | None = None,
        scope_path: Path | None = None,
        drift_path: Path | None = None,
        lungs_path: Path | None = None,
        extractor_path: Path | None = None,
    ):
        """The Keras model, its config, its input gate, its population scope check, its drift reference and
        its lung segmenter (None: a model trained before they existed, or one whose checks are being fitted),
        and the frozen base's converted pass (extractor.xml, for config.runtime openvino; default: beside
        the Keras file). $CXR_RUNTIME=tensorflow (serve.runtime) runs TensorFlow's pass, the reference,
        whatever the model's."""
        self.keras_model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
        self.config = config
        self.gate = InputGate.load(ood_path) if ood_path and Path(ood_path).is_file() else None
        self.scope = ScopeCheck.load(scope_path) if scope_path and Path(scope_path).is_file() else None
        self.drift = DriftReference.load(drift_path) if drift_path and Path(drift_path).is_file() else None
        self.segmenter = Segmenter.load(lungs_path) if lungs_path and Path(lungs_path).is_file() else None
        self.scorer = build_scorer(self.keras_model)  # one pass: probability and the gate's features
        self.extractor, self.head = None, None
        if config.runtime == "openvino" and served_runtime() == "model":
            path = Path(extractor_path or Path(keras_path).parent / EXTRACTOR_FILE)
            if not path.is_file():
                raise CxrError(f"{path} is missing: this model's frozen base runs in OpenVINO; log it with the model.")
            self.extractor, self.head = Extractor.load(path, config.precision), head_of(self.keras_model)
        size = config.image_size
        self.one_pass(np.zeros((1, size, size, 3), np.float32))  # build once, not per request
        self.lung_masks([np.zeros((size, size), np.uint8)])
        return self

    @property
    def runtime(self) -> str:
        """The pass this model runs: "tensorflow", or "openvino <precision>" for its converted pass."""
        return "tensorflow" if self.extractor is None else f"openvino {self.extractor.precision}"

    def one_pass(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uncalibrated probabilities, the gate's raw statistics) of a preprocessed batch: TensorFlow's
        scorer, or the converted pass followed by the model's own head layers in Keras."""
        if self.extractor is None:
            probability, stats = self.scorer.predict_on_batch(batch)
        else:
            stats, features = self.extractor.predict_on_batch(batch)
            probability = self.head(features, training=False)
        return np.asarray(probability, dtype=np.float64).reshape(-1), stats

    def lung_masks(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Each film's lung fields (bool, the film's size) from the model's segmenter; None without one."""
        return None if self.segmenter is None else self.segmenter.masks(arrays)

    def view(self, arrays: list[np.ndarray], masks: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """What the network reads of each film: its lung view (cxr/data/lung_view.py) when the model was
        trained on lung views, else the film itself. `masks`: the films' lung masks, if already segmented."""
        view = self.config.input_view
        if view not in LUNG_VIEWS or self.segmenter is None or not arrays:
            return arrays
        masks = masks if masks is not None else self.segmenter.masks(arrays)
        equalise, outside = self.config.lung_equalise, view == "lungs"
        return [lung_view(a, m, equalise, outside) for a, m in zip(arrays, masks, strict=True)]

    def view_box(self, array: np.ndarray, mask: np.ndarray | None) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the part of a film the network reads: the lungs' box for a lung
        view, else the whole film."""
        h, w = array.shape[:2]
        if self.config.input_view not in LUNG_VIEWS or mask is None or not mask.any():
            return 0, h, 0, w
        return bounding_box(mask)

    def preprocess(self, arrays: list[np.ndarray]) -> np.ndarray:
        size = self.config.image_size
        return np.stack([np.asarray(resize_and_scale(a, size)) for a in self.view(arrays)])

    def assess_arrays(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """8-bit RGB arrays (any size) -> (calibrated probabilities of the positive class, the gate's features)."""
        if not arrays:
            return np.zeros((0,), np.float64), np.zeros((0, 0), np.float64)
        return self.assess_batch(self.preprocess(arrays))

    def assess_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A preprocessed batch (`preprocess`) -> (calibrated probabilities, the gate's features)."""
        probability, stats = self.one_pass(batch)
        if self.config.flip_average:  # mean over the image and its mirror (train.flip_average)
            probability = (probability + self.one_pass(batch[:, :, ::-1, :])[0]) / 2
        # the temperature fitted in training (cxr/model/calibration.py)
        return apply_temperature(probability, self.config.temperature), feature_statistics(stats)

    def features_of(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The gate's features only: one pass, without the mirrored pass the probability needs."""
        if not arrays:
            return np.zeros((0, 0), np.float64)
        return feature_statistics(self.one_pass(self.preprocess(arrays))[1])

    def predict_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        """8-bit RGB arrays (any size) -> probabilities of the positive class (no gate)."""
        return self.assess_arrays(arrays)[0]

    def ood_scores(self, features: np.ndarray) -> np.ndarray:
        """The gate's distance of each image (NaN for a model without a gate)."""
        if self.gate is None:
            return np.full(len(features), np.nan)
        return self.gate.score(features)

    def shift_flags(self, features: np.ndarray) -> np.ndarray:
        """Whether each image gets the shift warning (accepted by the gate, past its shift threshold)."""
        if self.gate is None:
            return np.zeros(len(features), bool)
        scores = self.gate.score(features)
        return self.gate.accepts(scores) & self.gate.shifted(scores)

    def refusals(self, features: np.ndarray) -> np.ndarray:
        """Whether the input gate or the scope check refuses each image."""
        refused = np.zeros(len(features), bool)
        if self.gate is not None:
            refused |= ~self.gate.accepts(self.gate.score(features))
        if self.scope is not None:
            refused |= ~self.scope.accepts(self.scope.score(features))
        return refused

    def scope_scores(self, features: np.ndarray) -> np.ndarray:
        """The population scope check's score of each image (NaN for a model without one)."""
        if self.scope is None:
            return np.full(len(features), np.nan)
        return self.scope.score(features)

    def projections(self, features: np.ndarray) -> np.ndarray:
        """The drift reference's projection of each image ((n, 0) for a model without one)."""
        if self.drift is None:
            return np.zeros((len(features), 0))
        return self.drift.project(features)

    def label_for(self, probability: float) -> str:
        return self.config.label_for(probability)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """One row per file. A file the input gate or the scope check refuses, or one that is not a readable
        PNG, JPEG or DICOM, gets NaN probability, an empty label and the reason (one bad file never fails
        the others of a batch); `params` {"allow_ood": true} scores refused images anyway, keeping the reason
        as a warning. Probability is float32 and the text columns plain objects, as MLServer's codecs encode
        them (FP32, BYTES)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"image": list(model_input)})
        allow = bool((params or {}).get("allow_ood", False))
        # "the file", not a row number: MLServer's adaptive batching merges requests, so a row's place in the
        # merged batch is not its place in the caller's request
        rows = assess(self, [("the file", bytes(data)) for data in frame["image"]], allow)
        return answer_frame(rows)


def answer_frame(rows: list[dict]) -> pd.DataFrame:
    """`assess` rows -> the pyfunc's output columns."""

    def number(row, key):
        return np.nan if row.get(key) is None else row[key]

    return pd.DataFrame(
        {
            "probability": np.array([number(r, "probability") for r in rows], np.float32),
            "label": pd.Series([r.get("label") or "" for r in rows], dtype=object),
            "in_distribution": [r.get("in_distribution") is not False and "error" not in r for r in rows],
            "ood_score": [number(r, "ood_score") for r in rows],
            "reason": pd.Series([_reason(r) for r in rows], dtype=object),
        }
    )


def _reason(row: dict) -> str:
    return row.get("error") or row.get("reason") or row.get("warning") or ""


def log_model(model_dir: str | Path, name: str = "model"):
    """Log the model folder (model.keras + config.json) as an MLflow pyfunc model in the active run."""
    model_dir = Path(model_dir)
    example = pd.DataFrame({"image": [example_image()]})
    output = answer_frame([{"probability": 0.5, "label": "COVID", "in_distribution": True, "ood_score": 1.0}])
    signature = infer_signature(example, output, params={"allow_ood": False})
    artifacts = {"keras_model": str(model_dir / MODEL_FILE), "config": str(model_dir / CONFIG_FILE)}
    files = (("ood", OOD_FILE), ("scope", SCOPE_FILE), ("drift", DRIFT_FILE), ("lungs", SEGMENTER_FILE))
    files += (("extractor", EXTRACTOR_FILE), ("extractor_weights", WEIGHTS_FILE))  # logged side by side
    for key, file in files:
        if (model_dir / file).is_file():
            artifacts[key] = str(model_dir / file)
    # MLflow cautions, at every log, that a pickled python_model runs code when unpickled. This project's
    # front-ends never unpickle it (they load the logged files); MLServer does, and docs/security.md says
    # what that means for registry write access. The caution is dropped here, for this call only.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    pyfunc_log.addFilter(_without_pickle_caution)
    try:
        with tempfile.TemporaryDirectory(prefix="cxr-code-") as tmp:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=XrayClassifier(),
                artifacts=artifacts,
                code_paths=[str(package_code(Path(tmp)))],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
            )
    finally:
        pyfunc_log.removeFilter(_without_pickle_caution)


# what the logged model's copy of the package leaves out: bytecode, and the reference films training reads
# (the fitted monitors are logged as artifacts; a served model never reads the films themselves)
NOT_CODE = ("__pycache__", "*.pyc", "external_normals", "scope_reference")


def package_code(folder: Path) -> Path:
    """A copy of the `cxr` package under `folder`, without NOT_CODE: what the model logs as its code."""
    target = folder / "cxr"
    shutil.copytree(Path(cxr.__file__).parent, target, ignore=shutil.ignore_patterns(*NOT_CODE))
    return target


def _without_pickle_caution(record: logging.LogRecord) -> bool:
    return "Passing a Python object as `python_model`" not in record.getMessage()


def example_image(size: int = 64) -> bytes:
    """A synthetic grey-level PNG (no patient's image goes into the registry) as the model's input example."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.clip(np.add.outer(ramp, ramp[::-1]) / 2, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _requirements() -> list[str]:
    """Pins of what this process runs, TensorFlow under the distribution that provides it here
    (tensorflow-cpu in the CPU images, tensorflow in the GPU image)."""
    providers = packages_distributions().get("tensorflow", [])
    pins = []
    for package in (*providers[:1], "keras", "mlflow", "pillow", "pydicom", "numpy", "pandas", "pyyaml", "openvino"):
        try:
            pins.append(f"{package.replace('_', '-').lower()}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def load_pyfunc(model_uri: str):
    """Any MLflow model URI (runs:/, models:/name@alias, models:/name/N, a path) -> XrayClassifier.

    Unpickles nothing: MLflow's own loader would run `python_model.pkl` (cloudpickle), so whoever can
    write to the registry could run code here. This reads the model's MLmodel file, then loads only the
    Keras file (Keras' safe mode: no Python lambdas) and the JSON config it names.
    """
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    meta_file = local / "MLmodel"
    if not meta_file.is_file():
        raise CxrError(f"{model_uri} is not an MLflow model (no MLmodel file); pass a model URI.")
    flavor = (yaml.safe_load(meta_file.read_text()) or {}).get("flavors", {}).get("python_function", {})
    keys = ("keras_model", "config", "ood", "scope", "drift", "lungs", "extractor", "extractor_weights")
    paths = {key: (flavor.get("artifacts") or {}).get(key, {}).get("path", "") for key in keys}
    files = {key: (local / path).resolve() for key, path in paths.items() if path}
    required = [files.get("keras_model"), files.get("config")]
    if not all(required) or not all(f.is_file() and f.is_relative_to(local.resolve()) for f in files.values()):
        raise CxrError(
            f"{model_uri} is not a model this project logged (no Keras file and config in its MLmodel); "
            "register models with the pipeline."
        )
    return XrayClassifier().load(
        files["keras_model"],
        ModelConfig.from_file(files["config"]),
        files.get("ood"),
        files.get("scope"),
        files.get("drift"),
        files.get("lungs"),
        files.get("extractor"),
    )


def load_classifier(model_uri: str):
    """MLflow model URI -> XrayClassifier, with one sentence when the URI does not resolve."""
    try:
        return load_pyfunc(model_uri)
    except (MlflowException, OSError) as exc:
        raise CxrError(
            f"Model {model_uri} cannot be loaded ({first_line(exc)}); check the URI "
            "(runs:/ID/model, models:/NAME@ALIAS, models:/NAME/N) and MLFLOW_TRACKING_URI."
        ) from exc


def load_model_dir(model_dir: str | Path):
    """A trained model's folder (model.keras, config.json, ood.npz, scope.npz, drift.npz, lungs.keras) ->
    XrayClassifier."""
    model_dir = Path(model_dir)
    return XrayClassifier().load(
        model_dir / MODEL_FILE,
        ModelConfig.read(model_dir),
        model_dir / OOD_FILE,
        model_dir / SCOPE_FILE,
        model_dir / DRIFT_FILE,
        model_dir / SEGMENTER_FILE,
    )
