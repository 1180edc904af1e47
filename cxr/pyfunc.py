"""The MLflow model: the trained Keras network wrapped with the shared decoding and preprocessing.

Input: a DataFrame with an `image` column of raw file bytes (PNG, JPEG or DICOM). Output: a DataFrame
with `probability` (of the positive class) and `label` (at the recorded decision threshold).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


def read_config(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / CONFIG_FILE).read_text())


class XrayClassifier(mlflow.pyfunc.PythonModel):
    """Loads the Keras model once; predictions reuse one compiled predict function."""

    def load_context(self, context):
        self.load(Path(context.artifacts["keras_model"]), json.loads(Path(context.artifacts["config"]).read_text()))

    def load(self, keras_path: Path, config: dict):
        import keras

        import cxr.layers  # noqa: F401 (registers the custom layers before loading)

        self.keras_model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
        self.config = config
        size = int(config["image_size"])
        self.keras_model.predict_on_batch(np.zeros((1, size, size, 3), np.float32))  # build once, not per request
        return self

    def preprocess(self, arrays: list[np.ndarray]) -> np.ndarray:
        from cxr.images import resize_and_scale

        size = int(self.config["image_size"])
        return np.stack([np.asarray(resize_and_scale(a, size)) for a in arrays])

    def predict_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        """8-bit RGB arrays (any size) -> probabilities of the positive class."""
        if not arrays:
            return np.zeros((0,), np.float32)
        batch = self.preprocess(arrays)
        probability = np.asarray(self.keras_model.predict_on_batch(batch), dtype=np.float64).reshape(-1)
        if self.config.get("flip_average", False):  # mean over the image and its mirror (train.flip_average)
            mirrored = np.asarray(self.keras_model.predict_on_batch(batch[:, :, ::-1, :]), dtype=np.float64)
            probability = (probability + mirrored.reshape(-1)) / 2
        return probability

    def label_for(self, probability: float) -> str:
        positive, negative = self.config["positive_class"], self.config["negative_class"]
        return positive if probability >= float(self.config["threshold"]) else negative

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from cxr.images import decode_image

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"image": list(model_input)})
        arrays = [decode_image(bytes(data), f"row {i}")[0] for i, data in enumerate(frame["image"])]
        probabilities = self.predict_arrays(arrays)
        return pd.DataFrame({"probability": probabilities, "label": [self.label_for(p) for p in probabilities]})


def log_model(model_dir: str | Path, name: str = "model"):
    """Log the model folder (model.keras + config.json) as an MLflow pyfunc model in the active run."""
    import pandas as pd
    from mlflow.models import infer_signature

    import cxr

    model_dir = Path(model_dir)
    example = pd.DataFrame({"image": [b"\x89PNG..."]})
    signature = infer_signature(example, pd.DataFrame({"probability": [0.5], "label": ["COVID"]}))
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=XrayClassifier(),
        artifacts={"keras_model": str(model_dir / MODEL_FILE), "config": str(model_dir / CONFIG_FILE)},
        code_paths=[str(Path(cxr.__file__).parent)],
        signature=signature,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("tensorflow-cpu", "keras", "mlflow", "pillow", "pydicom", "numpy", "pandas", "pyyaml"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def load_pyfunc(model_uri: str):
    """Any MLflow model URI (runs:/, models:/name@alias, models:/name/N, a path) -> XrayClassifier.

    Unpickles nothing: MLflow's own loader would run `python_model.pkl` (cloudpickle), so whoever can
    write to the registry could run code here. This reads the model's MLmodel file, then loads only the
    Keras file (Keras' safe mode: no Python lambdas) and the JSON config it names.
    """
    import yaml

    from cxr.errors import CxrError

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    meta_file = local / "MLmodel"
    if not meta_file.is_file():
        raise CxrError(f"{model_uri} is not an MLflow model (no MLmodel file); pass a model URI.")
    flavor = (yaml.safe_load(meta_file.read_text()) or {}).get("flavors", {}).get("python_function", {})
    paths = {key: (flavor.get("artifacts") or {}).get(key, {}).get("path", "") for key in ("keras_model", "config")}
    files = {key: (local / path).resolve() for key, path in paths.items()}
    if not all(paths.values()) or not all(f.is_file() and f.is_relative_to(local.resolve()) for f in files.values()):
        raise CxrError(
            f"{model_uri} is not a model this project logged (no Keras file and config in its MLmodel); "
            "register models with the pipeline."
        )
    return XrayClassifier().load(files["keras_model"], json.loads(files["config"].read_text()))
