"""The served model: resolved once at start-up from the registry, with its version and data version."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import mlflow
import numpy as np

from cxr.errors import CxrError
from cxr.inference.classifier import load_classifier
from cxr.inference.gradcam import GradCam
from cxr.inference.scoring import prepare, score
from cxr.release.aliases import CHALLENGER, CHAMPION
from cxr.release.registry import alias_version

log = logging.getLogger("cxr.serve")


@dataclass
class ServedModel:
    uri: str
    version: str
    data_version: str
    classifier: object
    warning: str = ""
    gradcam: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def threshold(self) -> float:
        return self.classifier.config.threshold

    @property
    def positive_class(self) -> str:
        return self.classifier.config.positive_class

    def predict(self, arrays: list[np.ndarray]) -> np.ndarray:
        with self.lock:  # one Keras call at a time; the predict function is built once at load
            return self.classifier.predict_arrays(arrays)

    def assess(self, data: bytes, allow_ood: bool) -> tuple[dict, np.ndarray | None]:
        """One upload -> (the row `cxr.inference.scoring.assess` gives: refusal, warning, probability, label; the
        decoded image, None when its header was refused unread); bad input raises its CxrError (its kind
        sets the HTTP status)."""
        rows, arrays, index = prepare([("The uploaded file", data)], allow_ood, strict=True)  # decoded in parallel
        with self.lock:  # the model, one call at a time
            return score(self.classifier, rows, arrays, index, allow_ood)[0], (arrays[0] if arrays else None)

    def explain(self, array: np.ndarray) -> tuple[np.ndarray, float]:
        with self.lock:
            return self.gradcam.heatmap(self.classifier.preprocess([array]))


def resolve_default(name: str) -> tuple[str, str]:
    """models:/name@champion, else @challenger with a warning; a clear error with neither."""
    if alias_version(name, CHAMPION) is not None:
        return f"models:/{name}@{CHAMPION}", ""
    if alias_version(name, CHALLENGER) is not None:
        return (
            f"models:/{name}@challenger",
            f"No model holds @{CHAMPION} in '{name}'; serving @challenger, which no release manager has promoted.",
        )
    raise CxrError(
        f"No version of the registered model '{name}' holds @{CHAMPION} or @challenger in this MLflow store; a "
        "pipeline run registers one when its gate passes (`make run`: its summary says why it did not), "
        "or pass --model URI."
    )


def version_info(uri: str) -> tuple[str, str]:
    """(version, data version) for a models:/ URI; ('', '') for run or path URIs."""
    client = mlflow.MlflowClient()
    if not uri.startswith("models:/") or uri.startswith("models:/m-"):
        return "", ""
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, number = ref.rsplit("/", 1)
        mv = client.get_model_version(name, number)
    return str(mv.version), mv.tags.get("data_version", "")


def load_served_model(uri: str = "", name: str = "") -> ServedModel:
    """Load once: the classifier, a warmed-up Grad-CAM function, the version metadata."""
    warning = ""
    if not uri:
        uri, warning = resolve_default(name)
        if warning:
            log.warning(warning)
    classifier = load_classifier(uri)
    version, data_version = version_info(uri)
    size = classifier.config.image_size
    gradcam = GradCam(classifier.keras_model, size)
    gradcam.heatmap(np.zeros((1, size, size, 3), np.float32))  # trace once, now
    log.warning("serving %s (version %s, data version %s)", uri, version or "-", data_version or "-")
    return ServedModel(uri, version, data_version, classifier, warning, gradcam)
