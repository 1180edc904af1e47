import shutil

import pytest

from cxr.data.manifest import class_names, ingest, read_manifest
from cxr.errors import CxrError
from cxr.params import IngestParams


def test_manifest_has_every_file_with_hash_size_mode_label_split(tiny_data, tmp_path):
    records = ingest(tiny_data, tmp_path / "ds", IngestParams())
    frame = read_manifest(tmp_path / "ds")
    assert len(frame) == len(records) == 12
    assert set(frame["label"]) == {"COVID", "Normal"}
    assert (frame["width"] == 64).all() and (frame["mode"] == "L").all()
    assert frame["sha256"].str.len().eq(64).all()
    for file in frame["file"]:
        assert (tmp_path / "ds" / file).is_file()


def test_split_is_stratified_and_seeded(tiny_data, tmp_path):
    params = IngestParams(split={"train": 0.5, "val": 0.25, "test": 0.25}, seed=7)
    first = read_manifest_after(ingest, tiny_data, tmp_path / "a", params)
    second = read_manifest_after(ingest, tiny_data, tmp_path / "b", params)
    assert first["split"].tolist() == second["split"].tolist()
    counts = first.groupby(["label", "split"]).size().to_dict()
    for split in ("train", "val", "test"):
        assert counts[("COVID", split)] == counts[("Normal", split)] >= 1
    other = read_manifest_after(ingest, tiny_data, tmp_path / "c", IngestParams(split=params.split, seed=8))
    assert other["split"].tolist() != first["split"].tolist()


def read_manifest_after(fn, data, out, params):
    fn(data, out, params)
    return read_manifest(out)


def test_identical_files_land_in_the_same_split(tiny_data, tmp_path):
    for i in range(3):
        shutil.copy(tiny_data / "COVID" / "COVID-0.png", tiny_data / "COVID" / f"copy-{i}.png")
    frame = read_manifest_after(ingest, tiny_data, tmp_path / "ds", IngestParams())
    assert frame.groupby("sha256")["split"].nunique().max() == 1


def test_any_folder_names_work_and_positive_class_comes_from_params(tmp_path):
    from tests.conftest import make_dataset

    data = make_dataset(tmp_path / "d", per_class=4, classes=("pneumonia", "healthy"))
    frame = read_manifest_after(ingest, data, tmp_path / "ds", IngestParams(positive_class="pneumonia"))
    assert class_names(frame, "pneumonia") == ("healthy", "pneumonia")


def test_corrupt_file_is_flagged_not_fatal(tiny_data, tmp_path):
    (tiny_data / "Normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    frame = read_manifest_after(ingest, tiny_data, tmp_path / "ds", IngestParams())
    row = frame[frame["source"] == "Normal/broken.png"].iloc[0]
    assert not row["decodes"] and "Normal/broken.png" in row["error"]


def test_missing_folder_empty_class_and_wrong_positive_class(tiny_data, tmp_path):
    with pytest.raises(CxrError, match="does not exist"):
        ingest(tmp_path / "nowhere", tmp_path / "ds", IngestParams())
    with pytest.raises(CxrError, match="not a sub-folder"):
        ingest(tiny_data, tmp_path / "ds", IngestParams(positive_class="Pneumonia"))
    (tiny_data / "Empty").mkdir()
    with pytest.raises(CxrError, match="Empty holds no PNG"):
        ingest(tiny_data, tmp_path / "ds", IngestParams())


def test_near_duplicate_groups_join_close_hashes_transitively_and_only_those():
    from cxr.data.manifest import near_duplicate_groups

    base = int("f0" * 32, 16)
    close = base ^ 0b111  # 3 bits away
    closer_still = close ^ (0b11 << 100)  # 2 more bits: 5 from base
    far = base ^ int("0f" * 32, 16)
    groups = near_duplicate_groups([f"{h:064x}" for h in (base, close, closer_still, far)] + [""], max_bits=3)
    assert groups[0] == groups[1] == groups[2] and groups[3] not in groups[:3] and groups[4] not in groups[:4]


def test_parallel_ingestion_gives_the_same_dataset_as_one_process(tiny_data, tmp_path):
    shutil.copyfile(tiny_data / "COVID" / "COVID-0.png", tiny_data / "Normal" / "same_as_covid_0.png")
    (tiny_data / "Normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    one = ingest(tiny_data, tmp_path / "one", IngestParams(workers=1))
    two = ingest(tiny_data, tmp_path / "two", IngestParams(workers=2))
    assert [r.__dict__ for r in one] == [r.__dict__ for r in two]  # same records, same order, same splits
    assert sorted(p.name for p in (tmp_path / "one" / "images").iterdir()) == sorted(
        p.name for p in (tmp_path / "two" / "images").iterdir()
    )  # identical files share one PNG, and no partial file is left behind
