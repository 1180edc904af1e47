"""The pipeline's typed run parameters, derived from the params dataclasses (`cxr/params.py`).

Every field of the sections below is one pipeline input named `<stage>_<key>` (`train_learning_rate`),
typed from its field (int, float, bool, str; tuples as list, mappings as dict), with params.yaml's
effective value (profile and `--set` applied) as its default. A field added to a dataclass becomes a
pipeline input by itself; the components that read its section get it when components/generate.py
rewrites them (tests/unit/test_components.py fails until it has).

components/generate.py writes each kfp component with exactly the parameters its step uses (`used`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cxr.params import CHOICES, Params, section_fields

# Sections whose fields are run parameters; serve and cluster say where things run, not what is trained.
SECTIONS = ("ingest", "validate", "augment", "train", "lungs", "evaluate", "ood", "scope", "gate", "register", "mlflow")
# Fields the pipeline takes as inputs of their own (where the data and the tracking server are).
NOT_PARAMETERS = ("ingest.data_dir", "mlflow.tracking_uri")
PROFILE = "profile"
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "tuple": list, "dict": dict}


@dataclass(frozen=True)
class PipelineParameter:
    name: str  # the pipeline input: train_learning_rate
    dotted: str  # the params.yaml key: train.learning_rate
    annotation: type

    @property
    def description(self) -> str:
        text = f"params.yaml {self.dotted} ({self.annotation.__name__})."
        allowed = CHOICES.get(tuple(self.dotted.split(".", 1)))
        return text + (f" One of: {', '.join(allowed)}." if allowed else "")

    def value(self, params: Params) -> Any:
        section, key = self.dotted.split(".", 1)
        value = getattr(getattr(params, section), key)
        return list(value) if isinstance(value, tuple) else value


def pipeline_parameters() -> list[PipelineParameter]:
    """Every typed run parameter, section by section in declaration order."""
    return [
        PipelineParameter(f"{stage}_{f.name}", f"{stage}.{f.name}", _TYPES[f.type])
        for stage in SECTIONS
        for f in section_fields(stage)
        if f"{stage}.{f.name}" not in NOT_PARAMETERS
    ]


def parameter_values(params: Params) -> dict[str, Any]:
    """Pipeline input -> value, for the pipeline's defaults and a local run's arguments."""
    return {p.name: p.value(params) for p in pipeline_parameters()} | {PROFILE: params.profile}


def used(uses: tuple[str, ...]) -> list[PipelineParameter]:
    """The parameters named by `uses` (sections or stage.key), in the pipeline's order."""
    known = pipeline_parameters()
    for entry in uses:
        if entry != PROFILE and not any(p.dotted == entry or p.dotted.startswith(entry + ".") for p in known):
            raise ValueError(f"'{entry}' names no pipeline parameter")
    return [p for p in known if p.dotted in uses or p.dotted.split(".")[0] in uses]
