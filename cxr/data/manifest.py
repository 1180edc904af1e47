"""Ingestion: a folder of class sub-folders -> a dataset folder with a manifest and normalised images.

The dataset folder (a kfp `Dataset` artifact, or a DVC out) holds `manifest.csv` and `images/`, one
lossless 8-bit PNG per source file, so later steps never depend on the source path or format.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.data.images import IMAGE_EXTENSIONS, decode_image, difference_hash, encode_png, sha256_bytes
from cxr.errors import CxrError
from cxr.params import IngestParams

MANIFEST = "manifest.csv"
SPLITS = ("train", "val", "test")


@dataclass
class Record:
    source: str  # path relative to the data folder
    file: str  # normalised PNG, relative to the dataset folder ("" when undecodable)
    sha256: str
    dhash: str
    dhash256: str  # 16x16 difference hash: finer, for near-duplicate detection
    width: int
    height: int
    mode: str
    label: str
    split: str = ""
    decodes: bool = True
    error: str = ""


def list_class_folders(data_dir: Path) -> dict[str, list[Path]]:
    """Class name (folder name) -> image files, sorted. Errors name the folder and the fix."""
    if not data_dir.is_dir():
        raise CxrError(
            f"Data folder {data_dir} does not exist; pass --data with a folder of class sub-folders "
            "(or run `dvc pull` to fetch the bundled sample)."
        )
    classes = {}
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise CxrError(f"Class folder {folder} holds no PNG, JPEG or DICOM images; add images or remove it.")
        classes[folder.name] = files
    if len(classes) < 2:
        raise CxrError(
            f"Data folder {data_dir} needs at least two class sub-folders (e.g. COVID/ and Normal/), "
            f"found {len(classes)}."
        )
    return classes


def read_record(path: Path, data_dir: Path, label: str, out_dir: Path) -> Record:
    """Decode one file; write its normalised PNG under out_dir/images; keep decode errors in the record."""
    data = path.read_bytes()
    digest = sha256_bytes(data)
    source = str(path.relative_to(data_dir))
    try:
        array, mode = decode_image(data, source)
    except CxrError as exc:
        return Record(source, "", digest, "", "", 0, 0, "", label, decodes=False, error=str(exc))
    rel = f"images/{digest}.png"
    target = out_dir / rel
    if not target.exists():  # identical files share one PNG; write it atomically (workers may race)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(encode_png(array))
        os.replace(partial, target)
    height, width = array.shape[:2]
    return Record(source, rel, digest, difference_hash(array), difference_hash(array, 16), width, height, mode, label)


PARALLEL_FROM = 200  # fewer files than this: one process (starting workers costs more than it saves)


def ingest_workers(requested: int, n_files: int) -> int:
    """Worker processes for `n_files`: `requested` (ingest.workers), or with 0 one per core, capped at 8,
    and one process for small folders."""
    if requested:
        return max(1, requested)
    return 1 if n_files < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 8))


def _read_task(task) -> Record:
    return read_record(*task)


def read_records(tasks: list, workers: int = 1) -> list[Record]:
    """read_record for every (path, data_dir, label, out_dir), in order; across `workers` processes.

    Each worker decodes, hashes and writes one file at a time and sends back only its small Record, so
    no pixel data accumulates anywhere: memory stays flat as the folder grows. Workers are spawned, not
    forked (the parent may hold threads: MLflow's, TensorFlow's)."""
    if workers <= 1 or len(tasks) < 2:
        return [read_record(*task) for task in tasks]

    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_read_task, tasks, chunksize=chunk))


def near_duplicate_groups(hashes: list[str], max_bits: int, block: int = 64) -> list[int]:
    """Group index per item: items whose 256-bit dHashes differ in at most `max_bits` bits (a re-encoded,
    resized or slightly rotated copy) share a group, transitively; '' (undecodable) stays alone.

    Every pair is compared, vectorised: the hashes as four 64-bit words, XOR and popcount a block of rows
    at a time against the rows after it (20,000 images: 2 x 10^8 pairs, a few seconds, memory bounded by
    the block). Bucketing by hash chunks looked cheaper but degrades to slow Python loops when images
    share structure (many X-rays agree on the same bits), which real datasets do.
    """
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = [i for i, h in enumerate(hashes) if h]
    mask = (1 << 64) - 1
    words = np.array([[(int(hashes[i], 16) >> (64 * k)) & mask for k in range(4)] for i in index], dtype=np.uint64)
    for start in range(0, len(index), block):
        rows, rest = words[start : start + block], words[start:]
        distance = np.bitwise_count(rows[:, None, :] ^ rest[None, :, :]).sum(axis=2)
        for a, b in zip(*np.nonzero(distance <= max_bits), strict=True):
            a, b = index[start + int(a)], index[start + int(b)]
            if a < b and find(a) != find(b):
                parent[find(b)] = find(a)
    return [find(i) for i in range(len(hashes))]


def assign_splits(records: list[Record], fractions: dict, seed: int, near_duplicate_bits: int = 20) -> None:
    """Stratified, seeded split. Identical files and near-duplicates (see near_duplicate_groups) share a
    split, so none leaks across; a group goes with the class of its first member."""
    total = sum(fractions.get(s, 0) for s in SPLITS)
    if total <= 0 or any(fractions.get(s, 0) < 0 for s in SPLITS):
        raise CxrError("ingest.split in params.yaml needs non-negative train/val/test fractions summing to > 0.")
    keys = [r.dhash256 or f"sha:{r.sha256}" for r in records]
    groups_of = near_duplicate_groups([r.dhash256 for r in records], near_duplicate_bits)
    members: dict[str, list[Record]] = defaultdict(list)
    for record, key, group in zip(records, keys, groups_of, strict=True):
        members[key if not record.dhash256 else f"g{group}"].append(record)
    by_label: dict[str, list[list[Record]]] = defaultdict(list)
    for group in members.values():
        group.sort(key=lambda r: r.source)
        by_label[group[0].label].append(group)
    rng = random.Random(seed)
    for label in sorted(by_label):
        groups = sorted(by_label[label], key=lambda g: g[0].sha256)
        rng.shuffle(groups)
        n = len(groups)
        n_val = round(n * fractions.get("val", 0) / total)
        n_test = round(n * fractions.get("test", 0) / total)
        n_train = n - n_val - n_test
        for i, group in enumerate(groups):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            for record in group:
                record.split = split


def ingest(data_dir: str | Path, out_dir: str | Path, params: IngestParams) -> list[Record]:
    """Build the dataset folder; returns the manifest records (undecodable files included, flagged)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    classes = list_class_folders(data_dir)
    if params.positive_class not in classes:
        raise CxrError(
            f"Positive class '{params.positive_class}' (ingest.positive_class) is not a sub-folder of "
            f"{data_dir}; found {', '.join(classes)}."
        )
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    tasks = [(f, data_dir, label, out_dir) for label, files in classes.items() for f in files]
    records = read_records(tasks, ingest_workers(params.workers, len(tasks)))
    assign_splits(records, params.split, params.seed, params.near_duplicate_bits)
    write_manifest(records, out_dir)
    return records


def write_manifest(records: list[Record], out_dir: str | Path) -> Path:
    path = Path(out_dir) / MANIFEST
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(Record.__dataclass_fields__))
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))
    return path


def read_manifest(dataset_dir: str | Path):
    """The manifest as a pandas DataFrame (bool/int columns typed)."""
    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        raise CxrError(f"{path} is missing; run the ingest step first (cxr pipeline run, or dvc repro ingest).")
    frame = pd.read_csv(
        path,
        dtype={"sha256": str, "dhash": str, "dhash256": str, "file": str, "error": str, "mode": str},
        keep_default_na=False,
    )
    frame["decodes"] = frame["decodes"].astype(str).str.lower() == "true"
    return frame


def split_frame(frame, split: str):
    """The decodable rows of one split of a manifest frame."""
    return frame[(frame["split"] == split) & frame["decodes"]].reset_index(drop=True)


def source_rows(frame, sources):
    """The decodable rows of a manifest frame whose `source` is in `sources`, in manifest order."""
    return frame[frame["source"].isin(sources) & frame["decodes"]].reset_index(drop=True)


def class_names(frame, positive_class: str) -> tuple[str, str]:
    """(negative label, positive label): the sigmoid gives the positive class; with more than two
    folders every other class counts as negative, named `not-<positive>`."""
    labels = sorted(set(frame["label"]))
    if positive_class not in labels:
        raise CxrError(f"Positive class '{positive_class}' is not among the labels {labels}.")
    others = [label for label in labels if label != positive_class]
    return (others[0] if len(others) == 1 else f"not-{positive_class}"), positive_class


def labels_of(frame, positive_class: str) -> np.ndarray:
    """The manifest rows' labels as 1 (positive_class) or 0: the one place labels become numbers."""
    return (frame["label"] == positive_class).astype(np.int64).to_numpy()
