"""params.yaml -> frozen dataclasses, with a profile and `stage.key=value` overrides applied."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxr.aliases import CHALLENGER
from cxr.errors import CxrError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The project the command works on: the current folder when it holds a params.yaml (a clone, a
    CI checkout), else the folder this package was installed from."""
    cwd = Path.cwd()
    return cwd if (cwd / "params.yaml").is_file() else PROJECT_ROOT


@dataclass(frozen=True)
class IngestParams:
    data_dir: str = "data/covid-radiography-sample"
    positive_class: str = "COVID"
    split: dict = field(default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2})
    seed: int = 42
    near_duplicate_bits: int = 20
    workers: int = 0  # decode/hash/encode processes; 0: one per core (up to 8) from 200 files on


@dataclass(frozen=True)
class ValidateParams:
    expected_classes: tuple = ("COVID", "Normal")
    min_width: int = 64
    min_height: int = 64
    allowed_modes: tuple = ("L", "LA", "I;16", "I", "RGB", "RGBA", "P")
    min_class_share: float = 0.2
    max_class_share: float = 0.8


@dataclass(frozen=True)
class AugmentParams:
    """Defaults: the CPU profile's (no augmentation); PAPER_AUGMENT: the paper's ImageDataGenerator."""

    rotation_deg: float = 0
    width_shift: float = 0.0
    height_shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    horizontal_flip: bool = False
    mirror_both: bool = True  # with horizontal_flip: each image and its mirror every epoch, not one at random
    shuffle_buffer: int = 1024
    preview_images: int = 8

    @property
    def mirror_pairs(self) -> bool:
        """Every epoch shows each training image and its mirror (the dataset holds both)."""
        return self.horizontal_flip and self.mirror_both

    @property
    def coin_flip(self) -> bool:
        """Each training image is mirrored with probability 1/2 per epoch (ImageDataGenerator's flip)."""
        return self.horizontal_flip and not self.mirror_both


PAPER_AUGMENT = AugmentParams(
    rotation_deg=40, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, horizontal_flip=True, mirror_both=False
)


@dataclass(frozen=True)
class TrainParams:
    image_size: int = 176
    batch_size: int = 64
    epochs: int = 100
    learning_rate: float = 0.001
    momentum: float = 0.9
    clipnorm: float = 0.0
    weights: str = "hed"
    weights_path: str = ""
    freeze_base: bool = True
    base_input: str = "caffe"
    mixed_precision: str = "auto"
    flip_average: bool = False
    augment_on: str = "auto"  # data (tf.data, CPU) | model (a layer, on the accelerator) | auto: model with a GPU
    pooling: str = "block_stats"  # flatten (the paper) | average (global average pooling: 512 features) |
    # block_stats: per-channel mean and std of the last convolution of each of `stat_blocks`
    stat_blocks: tuple = (3, 4, 5)
    stat_zones: tuple = (3, 2)  # and over each zone of this [rows, columns] grid of the map; (1, 1): whole map only
    # where the frozen base's pass runs (cxr/inference/runtime.py): tensorflow (the reference) | openvino, at
    # precision fp32 | bf16 | int8 (calibrated on training images); openvino only with a frozen base and block_stats;
    # auto: openvino where it can run and no GPU is visible, else tensorflow
    runtime: str = "auto"
    precision: str = "int8"
    head: str = "linear"  # linear: Dense 1 sigmoid (a linear probe) | paper: Dense 1024 -> 512 ReLU -> 1 sigmoid
    standardise: bool = True  # the pooled features to zero mean, unit variance over the training images
    dropout: float = 0.0  # before each Dense layer of the head
    l2: float = 0.1  # L2 penalty on the head's Dense kernels
    seed: int = 42


@dataclass(frozen=True)
class LungParams:
    """The lung-field segmenter (cxr/model/segmenter.py) and the classifier's input view (cxr/data/lung_view.py)."""

    view: str = "crop"  # crop: the film cropped to the lungs' box | lungs: also black outside them | film: all of it
    equalise: bool = True  # crop and lungs views: histogram equalisation within the lung fields
    masks_dir: str = ""  # films with lung masks (images/, masks/, MANIFEST.csv); empty: the bundled external normals
    fit_share: float = 0.5  # of those fitting the segmenter; the rest measure its Dice
    size: int = 64  # the segmenter's input, pixels (the whole film squashed to a square)
    epochs: int = 80
    seed: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    threshold: float = 0.5
    threshold_strategy: str = "max_f1"
    target_sensitivity: float = 0.95
    threshold_min_per_class: int = 10
    threshold_prior_images: float = 20.0
    bootstrap_samples: int = 1000
    prevalence: float = 0.1  # PPV and NPV are reported at this prevalence of the positive class
    # K >= 2: K-fold cross-validation over train + val (cxr/evaluation/cross_validation.py); 0: the validation split
    cv_folds: int = 0
    # adult normal films from another source (never trained on): the share called normal is the external
    # specificity; empty: the bundled external normals (cxr/data/external_normals); "off": not measured
    external_dir: str = ""


@dataclass(frozen=True)
class OodParams:
    """The input gate (cxr/safety/input_gate.py): fitted in the train step, shipped in the model folder."""

    enabled: bool = True
    quantile: float = 0.99  # the threshold: this quantile of held-out in-distribution scores
    folds: int = 4  # training images are scored by detectors fitted on the other folds
    max_components: int = 256  # covariance directions kept (the rest share the shrinkage floor)
    target_accept: float = 0.95  # reported against: in-distribution X-rays accepted (val, test)
    target_reject: float = 0.95  # and the offline out-of-distribution set refused (cxr/safety/ood_set.py)
    # the per-image shift warning: an accepted image scoring above this quantile of held-out same-source
    # scores is flagged as unlike the training films (false-alarm rate 1 - this); 0: no warning
    shift_quantile: float = 0.95
    drift_components: int = 16  # principal components of the gate's features kept for drift detection (<= 32)


@dataclass(frozen=True)
class ScopeParams:
    """The population scope check (cxr/safety/population.py): refuses children's chest X-rays; fitted in training."""

    enabled: bool = True
    reference_dir: str = ""  # out-of-scope reference images; empty: the bundled children's X-rays
    accept_quantile: float = 0.98  # the threshold: this quantile of cross-fitted adult scores
    c: float = 0.1  # inverse L2 strength of the logistic regression
    folds: int = 5  # cross-fitting folds for the threshold and the reported refusal rate
    target_accept: float = 0.95  # reported against: adult val/test X-rays accepted
    target_refuse: float = 0.90  # and the reference children refused (cross-fitted)


@dataclass(frozen=True)
class GateParams:
    min_f1: float = 0.6
    min_delta: float = 0.0
    min_val_per_class: int = 10
    max_lungs_hidden_auc: float = 0.0  # > 0: the test ROC AUC with the lung fields hidden must not exceed this
    min_external_specificity: float = 0.0  # > 0: the external normals' specificity must reach this


@dataclass(frozen=True)
class RegisterParams:
    model_name: str = "covid-xray-vgg16"
    alias: str = CHALLENGER


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = "covid-xray"
    tracking_uri: str = ""


@dataclass(frozen=True)
class ServeParams:
    max_upload_mb: float = 20
    threads: int = 32  # gunicorn threads of the one worker process (the model is loaded once, in it)
    max_inflight: int = 24  # predictions admitted at once (they queue on the model); more get 503
    timeout_s: int = 120  # a request that takes longer gets its worker restarted
    reload_s: float = 30  # how often the app asks the registry which version its alias points at; 0: never
    max_batch: int = 8  # concurrent requests' images gathered into one model call; 1: one call per request
    max_wait_ms: float = 5  # how long the first request of a batch waits for others
    blas_threads: int = 1  # NumPy's BLAS threads in the serving process (cxr/serving/cpu_threads.py); 0: default
    # where each prediction's numbers and radiologists' findings are kept (SQLAlchemy URL); empty: a SQLite
    # file under .serve/ in the project; "off": none kept, no feedback
    records_url: str = ""
    records_max_rows: int = 100000
    records_max_days: float = 90
    site: str = ""  # where films come from when their DICOM names no InstitutionName (per-site validation)
    # an Open Inference Protocol v2 service (MLServer, KServe) that answers instead of the in-process model;
    # the app still decodes, explains (heat map) and records; empty: the model in process
    inference_url: str = ""
    # the frozen base's pass the served model runs: model: its own (the converted pass of a model trained with
    # train.runtime openvino); tensorflow: TensorFlow's, the reference. $CXR_RUNTIME, when set, decides instead
    runtime: str = "model"


@dataclass(frozen=True)
class MonitorParams:
    """`cxr monitor drift` (cxr/safety/drift.py): the test of a batch of images against the training split."""

    drift_alpha: float = 0.01  # drift when the energy test's p-value is below this
    drift_min_n: int = 30  # fewer images than this: no verdict (exit 2)
    drift_max_rows: int = 2000  # the newest this many recorded predictions are tested


@dataclass(frozen=True)
class ClusterParams:
    """Where the compiled pipeline runs: images, the in-cluster MLflow and data, GPU node placement."""

    image_registry: str = "ghcr.io/cxr"
    image_tag: str = "0.1.0"
    tracking_uri: str = "http://mlflow.cxr.svc.cluster.local:5000"
    mlflow_ui_url: str = ""  # the MLflow UI as a browser reaches it, for the KFP run's link; empty: tracking_uri
    data_dir: str = ""  # a dataset path on a volume the pods mount; empty: fetch data.dvc's version from dvc_remote
    data_pvc: str = ""  # with data_dir: the PersistentVolumeClaim mounted (read-only) at data_dir in the ingest pod
    dvc_remote: str = ""  # empty: the URL of the DVC project's remote `s3` (.dvc/config), the one CI pushes to
    dvc_secret: str = "cxr-s3-dvc"  # Kubernetes secret (access-key-id, secret-access-key) for the DVC remote
    # Kubernetes secret (username, password) of the MLflow identity every task signs in as; empty: none
    mlflow_secret: str = "cxr-mlflow-ci"
    dvc_endpoint_url: str = ""  # S3-compatible endpoint of the DVC remote (MinIO); empty: AWS
    # the training task's accelerator resource; empty: a CPU-only cluster (no GPU asked for, the CPU image)
    accelerator: str = "nvidia.com/gpu"
    gpu_node_selector: dict = field(default_factory=lambda: {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
    gpu_tolerations: tuple = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    train_timeout_s: int = 43200  # the training task's pod is stopped after this long
    step_timeout_s: int = 3600  # every other task's


@dataclass(frozen=True)
class Params:
    ingest: IngestParams = field(default_factory=IngestParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    train: TrainParams = field(default_factory=TrainParams)
    lungs: LungParams = field(default_factory=LungParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    ood: OodParams = field(default_factory=OodParams)
    scope: ScopeParams = field(default_factory=ScopeParams)
    gate: GateParams = field(default_factory=GateParams)
    register: RegisterParams = field(default_factory=RegisterParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)
    serve: ServeParams = field(default_factory=ServeParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)
    cluster: ClusterParams = field(default_factory=ClusterParams)
    profile: str = "cpu"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """`stage.key` -> value, for MLflow params (comparable across runs in the UI)."""
        out: dict[str, Any] = {}
        for stage, values in self.to_dict().items():
            if isinstance(values, dict):
                for key, value in values.items():
                    out[f"{stage}.{key}"] = value
            else:
                out[stage] = values
        return out


_SECTIONS = {
    "ingest": IngestParams,
    "validate": ValidateParams,
    "augment": AugmentParams,
    "train": TrainParams,
    "lungs": LungParams,
    "evaluate": EvaluateParams,
    "ood": OodParams,
    "scope": ScopeParams,
    "gate": GateParams,
    "register": RegisterParams,
    "mlflow": MlflowParams,
    "serve": ServeParams,
    "monitor": MonitorParams,
    "cluster": ClusterParams,
}


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> tuple[str, str, Any]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise CxrError(f"Override '{text}' is not of the form stage.key=value (e.g. train.epochs=3).")
    dotted, raw = text.split("=", 1)
    stage, key = dotted.split(".", 1)
    return stage, key, yaml.safe_load(raw) if raw != "" else ""


# The enumerated parameters and the values each accepts: checked when params load, not after training.
CHOICES = {
    ("train", "weights"): ("hed", "imagenet", "none"),
    ("train", "base_input"): ("caffe", "rescale"),
    ("train", "mixed_precision"): ("auto", "on", "off", "true", "false"),
    ("train", "augment_on"): ("auto", "data", "model"),
    ("train", "pooling"): ("block_stats", "flatten", "average"),
    ("train", "head"): ("linear", "paper"),
    ("train", "runtime"): ("auto", "tensorflow", "openvino"),
    ("train", "precision"): ("fp32", "bf16", "int8"),
    ("serve", "runtime"): ("model", "tensorflow"),
    ("lungs", "view"): ("crop", "lungs", "film"),
    ("evaluate", "threshold_strategy"): ("max_f1", "target_sensitivity", "fixed"),
}


def _check_choices(stage: str, section) -> None:
    for (where, key), allowed in CHOICES.items():
        value = getattr(section, key) if where == stage else None
        if value is not None and str(value).lower() not in allowed:
            raise CxrError(f"{stage}.{key} is '{value}'; choose one of {', '.join(allowed)}.")


def from_dict(raw: dict, profile: str = "cpu") -> Params:
    """Build Params from a plain dict (as in params.yaml, without `profiles`), checking every key."""
    sections = {}
    for stage, values in raw.items():
        if stage in ("profiles", "profile"):
            continue
        if stage not in _SECTIONS:
            raise CxrError(f"Unknown params section '{stage}'; known: {', '.join(_SECTIONS)}.")
        cls = _SECTIONS[stage]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values or {}) - known
        if unknown:
            raise CxrError(f"Unknown key(s) {sorted(unknown)} in params section '{stage}'; known: {sorted(known)}.")
        declared = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: _coerce(stage, declared[k], v) for k, v in (values or {}).items()}
        sections[stage] = cls(**values)
        _check_choices(stage, sections[stage])
    return Params(**sections, profile=profile)


def load_params(
    path: str | Path | None = None,
    profile: str = "cpu",
    overrides: list[str] | tuple[str, ...] = (),
) -> Params:
    """Read params.yaml, apply `profiles.<profile>` (none for `cpu`) and `stage.key=value` overrides."""
    path = Path(path) if path else project_root() / "params.yaml"
    if not path.is_file():
        raise CxrError(f"Params file {path} does not exist; pass --params with an existing YAML file.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CxrError(f"Params file {path} is not valid YAML ({exc.__class__.__name__}); fix it.") from exc
    profiles = raw.get("profiles", {}) or {}
    if profile != "cpu":
        if profile not in profiles:
            raise CxrError(f"Profile '{profile}' is not in {path}; known: cpu, {', '.join(profiles) or '(none)'}.")
        raw = _deep_merge(raw, profiles[profile])
    for text in overrides:
        stage, key, value = _parse_override(text)
        raw = _deep_merge(raw, {stage: {key: value}})
    return from_dict(raw, profile=profile)


def section_fields(stage: str) -> list[dataclasses.Field]:
    """The fields of one params section, in declaration order."""
    return list(dataclasses.fields(_SECTIONS[stage]))


def _coerce(stage: str, field_: dataclasses.Field, value: Any) -> Any:
    """A value as its field declares it (typed pipeline inputs arrive as JSON: 20.0 for 20, lists for tuples)."""
    kind = field_.type
    try:
        if kind == "bool" and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        if kind in ("int", "float") and isinstance(value, bool):
            raise ValueError(value)
        if kind == "int":
            if float(value) != int(float(value)):
                raise ValueError(value)
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "tuple":  # JSON numbers arrive as floats: 3.0 -> 3
            return tuple(int(v) if isinstance(v, float) and v.is_integer() else v for v in value)
        if kind == "dict" and not isinstance(value, dict):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise CxrError(f"{stage}.{field_.name} is '{value}'; it takes a {kind}.") from None
    return value


def from_flat(values: dict[str, Any], profile: str = "cpu") -> Params:
    """Params from `stage.key` -> value (the typed pipeline inputs a step takes), each coerced to its
    field's type; sections and keys not given keep their defaults."""
    raw: dict[str, dict] = {}
    for dotted, value in values.items():
        stage, key = dotted.split(".", 1)
        raw.setdefault(stage, {})[key] = value
    return from_dict(raw, profile=profile)
