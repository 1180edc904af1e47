"""The pipeline run's splits as MLflow datasets: rows from the manifest (never pixels), the DVC folder as
their source, the data version as their digest, listed as the run's inputs."""

import mlflow

from cxr.data.manifest import ingest
from cxr.data.versions import default_remote, repository_path
from cxr.tracking.datasets import DvcSource, log_split_datasets, split_datasets
from tests.conftest import PROJECT, tiny


def test_each_split_is_a_dataset_of_manifest_rows_with_its_dvc_source(tiny_data, tmp_path, tracking_uri):
    ingest(tiny_data, tmp_path / "ds", tiny().ingest)
    source = DvcSource("data/covid-radiography-sample", "34f9a6b736cfa9673e10703af843db71.dir", "dvc-remote")
    datasets = split_datasets(tmp_path / "ds", source)
    assert set(datasets) == {"train", "val", "test"}
    train = datasets["train"]
    assert list(train.df.columns) == ["file", "label", "split", "sha256"] and set(train.df["split"]) == {"train"}
    assert train.digest == source.md5 and train.name == "covid-radiography-sample-train"
    assert DvcSource.from_dict(source.to_dict()).to_dict() == source.to_dict()

    with mlflow.start_run() as run:
        log_split_datasets(run.info.run_id, datasets)
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 3
    assert {i.dataset.source_type for i in inputs} == {"dvc"}
    assert {t.value for i in inputs for t in i.tags} == {"training", "validation", "test"}
    assert {i.dataset.digest for i in inputs} == {source.md5}


def test_the_repository_names_its_data_folder_and_default_remote():
    assert (
        repository_path(str(PROJECT / "data" / "covid-radiography-sample"), PROJECT) == "data/covid-radiography-sample"
    )
    assert repository_path("/elsewhere/data", PROJECT) == "/elsewhere/data"
    assert default_remote(PROJECT) == "dvc-remote"
