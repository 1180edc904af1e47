"""The ingest step: a folder of class sub-folders -> manifest + normalised images."""

from __future__ import annotations

from pathlib import Path

import mlflow

from cxr import events
from cxr.data.manifest import ingest, read_manifest
from cxr.params import Params
from cxr.steps.context import RunContext, log_to_parent
from cxr.tracking import runs as tracking
from cxr.tracking.datasets import log_split_datasets, run_datasets


def summarise(dataset_dir: str) -> dict:
    """The ingest counts, read back from the manifest (the same whether ingest ran or was cached)."""
    frame = read_manifest(dataset_dir)
    counts = {f"n_{split}_{label}": int(n) for (split, label), n in frame.groupby(["split", "label"]).size().items()}
    return {"n_images": len(frame), "n_undecodable": int((~frame["decodes"]).sum()), **counts}


def run_ingest(data_dir: str, dataset_dir: str, params: Params) -> dict:
    """Manifest + normalised images in `dataset_dir`; returns the counts (no tracking: the kfp ingest is cached)."""
    records = ingest(data_dir, dataset_dir, params.ingest)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    events.figure(f"{len(records)} images: " + ", ".join(f"{n} {s}" for s, n in splits.items()))
    return summarise(dataset_dir)


def record_ingest(ctx: RunContext, dataset_dir: str, summary: dict) -> None:
    """The ingest child run (counts, manifest) and the counts on the parent run."""
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "ingest"):
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(Path(dataset_dir) / "manifest.csv"))
    log_to_parent(ctx, summary)
    # the splits as the run's dataset inputs: the UI's Dataset column, each with its DVC source
    log_split_datasets(ctx.parent_run_id, run_datasets(ctx.parent_run_id, dataset_dir))


def ingest_step(ctx: RunContext, data_dir: str, dataset_dir: str, params: Params) -> dict:
    summary = run_ingest(data_dir, dataset_dir, params)
    record_ingest(ctx, dataset_dir, summary)
    return summary
