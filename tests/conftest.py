"""Shared fixtures: tiny synthetic X-ray-like datasets, a temporary MLflow store, tiny params."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# every `cxr serve` a test starts keeps its prediction records in this process's own folder, not the checkout's
os.environ.setdefault("CXR_RECORDS_URL", f"sqlite:///{tempfile.mkdtemp(prefix='cxr-records-')}/records.db")

PROJECT = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT / "data" / "covid-radiography-sample"


def first_sample(out: Path) -> Path:
    """The 40 images of the bundled dataset's first version, copied into `out` (class folders): a dataset too
    small for the gate to decide on. They are its 299 x 299 images; the 360 added since are 224 x 224."""
    for path in sorted(SAMPLE.glob("*/*.png")):
        with Image.open(path) as image:
            original = image.size == (299, 299)
        if original:
            (out / path.parent.name).mkdir(parents=True, exist_ok=True)
            (out / path.parent.name / path.name).write_bytes(path.read_bytes())
    return out


def synthetic_xray(seed: int, size: int = 64, bright: bool = False) -> np.ndarray:
    """A grey image with two dark 'lungs'; `bright` adds hazy opacity (a learnable difference)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 180 - 80 * (
        np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03) + np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03)
    )
    if bright:
        image += 60 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.6) ** 2) / 0.02)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(root: Path, per_class: int = 6, size: int = 64, classes=("COVID", "Normal")) -> Path:
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_xray(1000 * c + i, size, bright=(name == "COVID"))).save(
                folder / f"{name}-{i}.png"
            )
    return root


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store for one test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.end_run()


TINY = [
    "train.image_size=32",
    "train.epochs=1",
    "train.batch_size=4",
    "train.weights=none",
    "gate.min_f1=0.0",
    "gate.min_val_per_class=1",
    "augment.preview_images=2",
    "evaluate.bootstrap_samples=50",
    "lungs.size=16",
    "lungs.epochs=1",
    "lungs.fit_share=0.2",
    # TensorFlow's reference pass: the default (auto: OpenVINO int8) adds its conversion and calibration to every
    # training; tests/model/test_runtime.py and the pipeline-level tests run the default
    "train.runtime=tensorflow",
]


def tiny(*extra: str):
    """Fast settings: 32 px, 1 epoch, random weights, permissive gate, a one-epoch 16 px lung segmenter; plus
    `stage.key=value` extras."""
    from cxr.params import load_params

    return load_params(overrides=TINY + list(extra))


def train_on_sample(tmp: Path, *overrides: str) -> Path:
    """A model trained on the real sample with tiny settings plus `overrides`, dataset in tmp/ds; returns
    its folder (tmp/model)."""
    from cxr.data.manifest import ingest
    from cxr.training import train_model

    params = tiny(*overrides)
    ingest(SAMPLE, tmp / "ds", params.ingest)
    train_model(tmp / "ds", params, tmp / "model", log_to_mlflow=False)
    return tmp / "model"


@pytest.fixture
def tiny_params():
    return tiny()


def dicom_path() -> Path:
    import data_store

    return Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"


def parent_run(store: str, name: str):
    """The MLflow parent run a pipeline run named `name` left in the store at `store`."""
    import mlflow

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    (run,) = mlflow.search_runs(
        experiment_names=["covid-xray"], filter_string=f"attributes.run_name = '{name}'", output_format="list"
    )
    return run
