"""The served model and how it follows the registry.

`ServedModel` is one loaded version (classifier, Grad-CAM, version metadata). `ModelFollower` holds the
one being served: started without a fixed version it follows `@champion` (else `@challenger`, with a
warning), or the alias a `models:/NAME@ALIAS` URI names. Every `serve.reload_s` seconds it asks the
registry which version the alias points at; when that changes it loads the new version in its own
thread and swaps it in with one assignment, so a request in flight finishes on the model it started
with. A version that fails to load, has no input gate or an incomplete model card is not swapped in,
nor is a version moved to `@champion` outside `cxr registry promote` / `rollback` (which check the gate
and the card and record who and why): the old one keeps serving and `/readyz` and `/metrics` say
why. Before any version holds the alias the app still runs (`/readyz` 503 with the reason) and picks
up the first one by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import mlflow
import numpy as np

from cxr.aliases import CHALLENGER, CHAMPION
from cxr.data.images import resize_and_scale
from cxr.errors import CxrError, first_line
from cxr.inference.classifier import load_classifier
from cxr.inference.gradcam import GradCam, place_heat
from cxr.inference.scoring import decide, prepare, tensor_outputs
from cxr.release.card import card_problems
from cxr.release.promotion import card_of, release_problem
from cxr.release.registry import alias_version
from cxr.serving.batching import Batcher
from cxr.serving.inference_client import InferenceClient
from cxr.tracking.record import Lineage

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
    remote: InferenceClient | None = None  # serve.inference_url: the answer from there, the explanation here

    @property
    def threshold(self) -> float:
        return self.classifier.config.threshold

    @property
    def positive_class(self) -> str:
        return self.classifier.config.positive_class

    def __post_init__(self):
        self.batcher = Batcher(partial(tensor_outputs, self.classifier), 1, 0, self.lock)

    def set_batching(self, max_batch: int, max_wait_ms: float) -> ServedModel:
        """Gather concurrent requests into one model call (serve.max_batch, serve.max_wait_ms)."""
        self.batcher = Batcher(partial(tensor_outputs, self.classifier), max_batch, max_wait_ms, self.lock)
        return self

    def use_remote(self, remote: InferenceClient | None) -> ServedModel:
        """Ask `remote` (an Open Inference Protocol service) for each answer instead of the model in process."""
        self.remote = remote
        return self

    def predict(self, arrays: list[np.ndarray]) -> np.ndarray:
        with self.lock:  # one Keras call at a time; the predict function is built once at load
            return self.classifier.predict_arrays(arrays)

    def assess(self, data: bytes, allow_ood: bool, timings: dict | None = None) -> tuple[dict, np.ndarray | None]:
        """One upload -> (the row `cxr.inference.scoring.assess` gives: refusal, warning, probability, label; the
        decoded image, None when its header was refused unread); bad input raises its CxrError (its kind
        sets the HTTP status). `timings` gets the seconds of each stage (decode, model) and the batch size."""
        timings = {} if timings is None else timings
        started = time.perf_counter()
        rows, arrays, index = prepare([("The uploaded file", data)], allow_ood, strict=True)  # in this thread
        timings["decode"] = time.perf_counter() - started
        if not arrays:
            return rows[0], None
        if self.remote is not None:  # decoded here (bad input is the app's 4xx), answered by the service
            started = time.perf_counter()
            answer, version = self.remote.infer(data, allow_ood)
            timings["model"] = time.perf_counter() - started
            gate = self.classifier.gate  # the same version's gate: its threshold, which the service does not send
            threshold = (
                round(float(gate.threshold), 3) if gate is not None and answer["ood_score"] is not None else None
            )
            return rows[0] | answer | {"ood_threshold": threshold, "answered_by": version}, arrays[0]
        tensors = list(self.classifier.preprocess(arrays))  # resized here, in parallel with other requests
        timings["decode"] = time.perf_counter() - started
        started = time.perf_counter()
        outputs, timings["batch_size"] = self.batcher(tensors)  # with other requests' images, one call
        timings["model"] = time.perf_counter() - started
        return decide(self.classifier, rows, index, outputs, allow_ood)[0], arrays[0]

    def explain(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(Grad-CAM heat map at the film's size: computed on what the network read, the lung view or the
        film, and placed back where that view lies on the film; the film's lung mask, None for a model
        without a segmenter)."""
        with self.lock:
            masks = self.classifier.lung_masks([array])
            mask = None if masks is None else masks[0]
            read = self.classifier.view([array], masks)[0]
            heat, _ = self.gradcam.heatmap(self._scaled(read))
        return place_heat(heat, self.classifier.view_box(array, mask), array.shape[:2]), mask

    def _scaled(self, view: np.ndarray) -> np.ndarray:
        """What `preprocess` makes of a film, from its view already made (no second segmentation)."""
        size = self.classifier.config.image_size
        return np.asarray(resize_and_scale(view, size))[None]


def default_alias(name: str):
    """(alias, its model version, warning): @champion, else @challenger with a warning; a clear error
    with neither."""
    champion = alias_version(name, CHAMPION)
    if champion is not None:
        return CHAMPION, champion, ""
    challenger = alias_version(name, CHALLENGER)
    if challenger is not None:
        return (
            CHALLENGER,
            challenger,
            f"No model holds @{CHAMPION} in '{name}'; serving @challenger, which no release manager has promoted.",
        )
    raise CxrError(
        f"No version of the registered model '{name}' holds @{CHAMPION} or @challenger in this MLflow store; a "
        "pipeline run registers one when its gate passes (`make run`: its summary says why it did not), "
        "or pass --model URI."
    )


def resolve_default(name: str) -> tuple[str, str]:
    """models:/name@champion, else @challenger with a warning; a clear error with neither."""
    alias, _, warning = default_alias(name)
    return f"models:/{name}@{alias}", warning


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
    return str(mv.version), Lineage.from_tags(mv.tags).data_version


def load_served_model(uri: str = "", name: str = "") -> ServedModel:
    """Load once: the classifier, a warmed-up Grad-CAM function, the version metadata."""
    warning = ""
    if not uri:
        uri, warning = resolve_default(name)
        if warning:
            log.warning(warning)
    version, data_version = version_info(uri)
    return _load(uri, uri, version, data_version, warning)


def _load(shown_uri: str, load_uri: str, version: str, data_version: str, warning: str) -> ServedModel:
    classifier = load_classifier(load_uri)
    size = classifier.config.image_size
    gradcam = GradCam(classifier.keras_model, size)
    gradcam.heatmap(np.zeros((1, size, size, 3), np.float32))  # trace once, now
    log.info("serving %s (version %s, data version %s)", shown_uri, version or "-", data_version or "-")
    return ServedModel(shown_uri, version, data_version, classifier, warning, gradcam)


def followed_alias(uri: str, name: str) -> tuple[str, str] | None:
    """(model name, alias) a URI follows: none given -> (name, "") meaning @champion else @challenger;
    models:/NAME@ALIAS -> (NAME, ALIAS); a fixed version, run or path -> None (nothing to follow)."""
    if not uri:
        return name, ""
    ref = uri.removeprefix("models:/")
    if uri.startswith("models:/") and "@" in ref:
        model, alias = ref.split("@", 1)
        return model, alias
    return None


class ModelFollower:
    """The model being served, following its registry alias (see the module's docstring)."""

    def __init__(
        self,
        uri: str = "",
        name: str = "",
        reload_s: float = 30.0,
        batching: tuple[int, float] = (1, 0.0),
        remote: InferenceClient | None = None,
    ):
        self.uri, self.name, self.reload_s = uri, name, reload_s
        self.batching = batching  # (serve.max_batch, serve.max_wait_ms) of every model it loads
        self.remote = remote  # serve.inference_url's client, given to every model it loads
        self.reloads: Counter[str] = Counter()  # swapped / failed / refused, for /metrics
        self.follows = followed_alias(uri, name)
        self.current: ServedModel | None = None
        self.reason = ""  # why nothing is served yet
        self.reload_error = ""  # why the newest version is not the one served
        self._stop = threading.Event()
        self._wake = threading.Event()  # a registry webhook: check now, not at the next interval
        self._thread: threading.Thread | None = None

    @classmethod
    def fixed(cls, served: ServedModel) -> ModelFollower:
        """One loaded model, never replaced (tests, benchmarks)."""
        follower = cls(served.uri)
        follower.follows, follower.current = None, served
        return follower

    def target(self):
        """(URI shown, the model version the alias points at now, warning); CxrError when no version
        holds it."""
        model, alias = self.follows
        if alias:
            mv = alias_version(model, alias)
            if mv is None:
                raise CxrError(f"No version of '{model}' holds @{alias} yet; the app serves it once one does.")
            return f"models:/{model}@{alias}", mv, ""
        alias, mv, warning = default_alias(model)
        return f"models:/{model}@{alias}", mv, warning

    def refresh(self) -> bool:
        """Check the alias once; load and swap in a new version. True when the served model changed."""
        if self.follows is None:
            if self.current is None:
                loaded = load_served_model(self.uri, self.name)
                self.current = loaded.set_batching(*self.batching).use_remote(self.remote)
                return True
            return False
        try:
            shown, mv, warning = self.target()
        except (CxrError, mlflow.exceptions.MlflowException) as exc:
            if self.current is None:
                self.reason = f"No model has been released yet: {first_line(exc)}"
            return False
        version = str(mv.version)
        unreleased = release_problem(mv.name, version) if shown.endswith(f"@{CHAMPION}") else ""
        if unreleased:
            return self._keep(version, unreleased, "refused")
        if self.current is not None and self.current.version == version:
            self.current.uri, self.current.warning = shown, warning  # e.g. @challenger promoted to @champion
            self.reload_error = ""
            return False
        try:
            data_version = Lineage.from_tags(mv.tags).data_version
            model = _load(shown, f"models:/{mv.name}/{version}", version, data_version, warning)
            model.set_batching(*self.batching).use_remote(self.remote)
            if self.current is not None:
                self._check_replacement(model, mv)
        except Exception as exc:  # noqa: BLE001 (any failure keeps the model that serves)
            return self._keep(version, first_line(exc), "failed")
        before = self.current.version if self.current else "none"
        self.current, self.reason, self.reload_error = model, "", ""  # one assignment: requests in flight keep theirs
        self.reloads["swapped"] += 1
        log.info("now serving version %s (was %s)", version, before)
        if warning:
            log.warning(warning)
        return True

    def _keep(self, version: str, why: str, result: str) -> bool:
        """`version` is not swapped in: the served model (if any) stays, and /readyz and /metrics say why."""
        kept = f"; still serving version {self.current.version}" if self.current else ""
        self.reload_error = f"version {version} was not loaded ({why}){kept}"
        if self.current is None:
            self.reason = f"No model can be served: {self.reload_error}"
        log.warning(self.reload_error)
        self.reloads[result] += 1  # at every check while the alias stays there: the alert's signal
        return False

    @staticmethod
    def _check_replacement(model: ServedModel, mv) -> None:
        if model.classifier.gate is None:
            raise CxrError("it has no input gate")
        problems = card_problems(card_of(mv))
        if problems:
            raise CxrError("its model card is incomplete: " + "; ".join(problems))

    def start(self) -> ModelFollower:
        """The first load now (a failure is the `reason`, not an exception), then a polling thread."""
        self.refresh()
        if self.follows is not None and self.reload_s > 0:
            self._thread = threading.Thread(target=self._poll, name="cxr-model-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Check the registry now (an alias moved, says the server's webhook)."""
        self._wake.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.reload_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 (the thread must outlive a registry hiccup)
                log.warning("checking the registry failed (%s); retrying in %gs", first_line(exc), self.reload_s)
