"""What a trained model's folder says about the model: `config.json`, typed.

Training writes it, the classifier, the pipeline steps, the registry and the serving app read it. Keys
a config written by an older version lacks take the defaults below; keys this version does not know
are ignored, so a model registered before a field existed still loads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
NOT_FITTED = "1 (not fitted)"  # how older configs began temperature_method when no temperature was fitted


@dataclass(frozen=True)
class ModelConfig:
    image_size: int
    positive_class: str
    negative_class: str
    threshold: float  # on the calibrated probability; at or above it the label is positive_class
    threshold_strategy: str = "fixed"
    threshold_method: str = ""  # a sentence: how the threshold was chosen
    temperature: float = 1.0  # probability = sigmoid(logit / temperature)
    temperature_fitted: bool = False
    temperature_method: str = ""  # a sentence: how the temperature was chosen
    validation: str = ""  # the images the validation figures rest on
    cv_folds: int = 0
    weights: str = ""
    freeze_base: bool = True
    flip_average: bool = False  # average each image's probability with its mirror's
    augmented_in: str = "data"
    fitted_on: str = ""
    best_epoch: int = 0
    epoch_selection: str = ""
    profile: str = ""
    input_view: str = "film"  # film | crop | lungs: what the network reads (cxr/data/lung_view.py)
    lung_equalise: bool = False  # crop and lungs: histogram equalisation within the lung fields
    runtime: str = "tensorflow"  # openvino: the frozen base's pass is extractor.xml (cxr/inference/runtime.py)
    precision: str = "fp32"  # the converted pass's: fp32 | bf16 | int8

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        if "temperature_fitted" not in values:  # written before the flag existed
            kept["temperature_fitted"] = not str(values.get("temperature_method", "")).startswith(NOT_FITTED)
        return cls(**kept)

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelConfig:
        return cls.from_file(Path(model_dir) / CONFIG_FILE)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def label_for(self, probability: float) -> str:
        return self.positive_class if probability >= self.threshold else self.negative_class


def describe(pooling: str, head: str, standardise: bool, stat_blocks=(3, 4, 5), stat_zones=(1, 1)) -> str:
    """The network in words, for the model card: VGG16 without its top, then the head these settings build."""
    rows, cols = stat_zones
    zones = "" if (rows, cols) == (1, 1) else f", over the whole map and each zone of a {rows} x {cols} grid"
    pooled = {
        "flatten": "Flatten",
        "average": "global average pooling",
        "block_stats": "per-channel mean and standard deviation (log1p) of blocks "
        + ", ".join(str(b) for b in sorted(set(stat_blocks)))
        + zones,
    }
    layers = [pooled.get(pooling, pooling)]
    layers += ["feature standardisation"] if standardise else []
    layers += ["Dense 1024 ReLU", "Dense 512 ReLU"] if head == "paper" else []
    return f"VGG16 without its top + {', '.join(layers)}, Dense 1 sigmoid"
