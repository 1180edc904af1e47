"""The ingest step: a folder of class sub-folders -> manifest + normalised images."""

from __future__ import annotations

from pathlib import Path

import mlflow

from cxr import events
from cxr.data.manifest import ingest
from cxr.params import Params
from cxr.steps.context import RunContext, log_to_parent
from cxr.tracking import runs as tracking


def ingest_step(ctx: RunContext, data_dir: str, dataset_dir: str, params: Params) -> dict:
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "ingest"):
        records = ingest(data_dir, dataset_dir, params.ingest)
        counts: dict[str, int] = {}
        for r in records:
            counts[f"n_{r.split}_{r.label}"] = counts.get(f"n_{r.split}_{r.label}", 0) + 1
        summary = {"n_images": len(records), "n_undecodable": sum(not r.decodes for r in records), **counts}
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(Path(dataset_dir) / "manifest.csv"))
    log_to_parent(ctx, summary)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    events.figure(f"{len(records)} images: " + ", ".join(f"{n} {s}" for s, n in splits.items()))
    return summary
