"""The training signature: what shapes a model, recorded on every registered version.

Three parts, each a short hash: the data version (data.dvc's md5), the effective parameters that shape
the model (every stage's, less those that only say where things run or are logged, and the gate's, which
decide registration, not the model), and the code that trains (the core library's Python sources,
less the web app's and the MLflow server plug-in's, hashed from the files the running process imports:
in a container, the code the image holds).
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cxr.params import Params
from cxr.tracking import record

# sections and keys that do not change the trained model
NOT_SHAPING_SECTIONS = ("gate", "register", "mlflow", "serve", "monitor", "cluster", "profile")
NOT_SHAPING_KEYS = ("ingest.data_dir", "ingest.workers", "augment.preview_images", "evaluate.bootstrap_samples")
NOT_TRAINING_CODE = ("serving", "mlflow_auth")
TAGS = (record.DATA_VERSION, record.PARAMS_HASH, record.CODE_VERSION)


def _canonical(value):
    """Mappings with sorted keys, sequences as tuples: one text per value, whichever way it was loaded
    (params.yaml keeps the file's key order; the steps' JSON copy sorts the keys)."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    return value


def shaping_params(params: Params) -> dict[str, str]:
    """`stage.key` -> value, as the pipeline logs it to MLflow (text), of the parameters that shape the model."""
    return {
        key: str(_canonical(value))
        for key, value in sorted(params.flat().items())
        if key.split(".")[0] not in NOT_SHAPING_SECTIONS and key not in NOT_SHAPING_KEYS
    }


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(shaping_params(params), sort_keys=True).encode()).hexdigest()[:12]


def code_version(package: Path | None = None) -> str:
    """sha256 over the training code's Python files (path and content, every cxr package but the serving
    and MLflow-server ones), 12 hex digits."""
    root = package or Path(__file__).resolve().parents[1]  # the cxr package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in NOT_TRAINING_CODE or "__pycache__" in rel.parts:
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class TrainingSignature:
    data_version: str
    params_hash: str
    code_version: str

    @classmethod
    def of(cls, data_version: str, params: Params) -> TrainingSignature:
        return cls(data_version, params_hash(params), code_version())

    @classmethod
    def from_tags(cls, tags: dict) -> TrainingSignature:
        return cls(*(tags.get(key, "") for key in TAGS))

    def tags(self) -> dict[str, str]:
        return dict(zip(TAGS, (self.data_version, self.params_hash, self.code_version), strict=True))

    def changes(self, before: TrainingSignature) -> list[str]:
        """The parts that differ from `before`, in words (a part `before` lacks counts as changed)."""
        parts = (("data", "data_version"), ("parameters", "params_hash"), ("training code", "code_version"))
        return [
            f"{words} {getattr(before, key) or '(not recorded)'} -> {getattr(self, key)}"
            for words, key in parts
            if getattr(self, key) != getattr(before, key)
        ]


def _read_logged(text: str) -> str:
    """A logged param's text in the canonical form (its dict keys sorted), where it reads as a literal."""
    try:
        return str(_canonical(ast.literal_eval(text)))
    except (ValueError, SyntaxError):
        return text


def changed_params(params: Params, logged: dict[str, str]) -> list[str]:
    """The shaping parameters whose value differs from a run's logged MLflow params (`stage.key` -> text)."""
    out = []
    for key, value in shaping_params(params).items():
        was = logged.get(key)
        if was is not None and was != value:
            was = _read_logged(was)
        if was != value:
            out.append(f"{key} {was if was is not None else '(unset)'} -> {value}")
    return out
