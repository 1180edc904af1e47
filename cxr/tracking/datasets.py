"""The pipeline run's data as MLflow datasets: one per split (train, validation, test), so the MLflow UI's
Dataset column and the run page name what a model was trained and measured on.

Each dataset's rows are the split's manifest (file, label, split, sha256), never pixels; its source is the
DVC-tracked folder (`DvcSource`: the repository path, the folder's md5 as data.dvc records it, the DVC
remote) and its digest is that md5, the data version. The pipeline run lists the three as inputs; the
evaluate step attaches each split's metrics to the logged model with the dataset they were measured on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import DatasetInput, InputTag

from cxr.data.manifest import read_manifest
from cxr.data.versions import fetch_version
from cxr.tracking.record import Lineage

SPLITS = {"train": "training", "val": "validation", "test": "test"}  # split -> the input's context
CONTEXT_TAG = "mlflow.data.context"
COLUMNS = ["source", "label", "split", "sha256"]


class DvcSource(DatasetSource):
    """A folder versioned by DVC: where it sits in the repository, its md5 (data.dvc's), its remote."""

    def __init__(self, path: str, md5: str, remote: str = ""):
        self.path, self.md5, self.remote = path, md5, remote

    @staticmethod
    def _get_source_type() -> str:
        return "dvc"

    def load(self, dst_path: str | None = None) -> str:
        """Fetch this version of the folder from the remote (cxr/data/versions.py); returns where it is."""
        dest = Path(dst_path or tempfile.mkdtemp(prefix="cxr-data-"))
        return str(fetch_version(self.remote, self.md5, dest))

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source) -> DvcSource:
        raise NotImplementedError("a DVC source is built from its fields, not resolved from a string")

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "md5": self.md5, "remote": self.remote}

    @classmethod
    def from_dict(cls, source_dict: dict) -> DvcSource:
        return cls(source_dict["path"], source_dict["md5"], source_dict.get("remote", ""))


def split_datasets(dataset_dir: str | Path, source: DvcSource) -> dict[str, PandasDataset]:
    """One dataset per split the ingested dataset holds, named `<folder>-<split>`, digest the data version."""
    frame = read_manifest(dataset_dir)[COLUMNS].rename(columns={"source": "file"})
    folder = Path(source.path).name or "data"
    digest = source.md5[:36] or "unversioned"
    out = {}
    for split in SPLITS:
        rows = frame[frame["split"] == split].reset_index(drop=True)
        if len(rows):
            out[split] = mlflow.data.from_pandas(
                rows, source=source, targets="label", name=f"{folder}-{split}", digest=digest
            )
    return out


def log_split_datasets(run_id: str, datasets: dict[str, PandasDataset]) -> None:
    """The datasets as the run's inputs, each with its split as the context."""
    inputs = [
        DatasetInput(dataset._to_mlflow_entity(), [InputTag(CONTEXT_TAG, SPLITS[split])])
        for split, dataset in datasets.items()
    ]
    mlflow.MlflowClient().log_inputs(run_id, datasets=inputs)


def source_of(lineage: Lineage) -> DvcSource:
    """The DVC folder a pipeline run's lineage names."""
    return DvcSource(lineage.data_path, lineage.data_version, lineage.dvc_remote)


def run_datasets(run_id: str, dataset_dir: str | Path) -> dict[str, PandasDataset]:
    """The split datasets of the pipeline run `run_id`, their source the DVC folder its lineage names."""
    lineage = Lineage.from_tags(mlflow.MlflowClient().get_run(run_id).data.tags)
    return split_datasets(dataset_dir, source_of(lineage))
