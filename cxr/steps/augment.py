"""The augment step: records the augmentation training applies, with a preview grid."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from cxr import events
from cxr.data.augment import augmentation_spec, write_preview
from cxr.data.manifest import read_manifest, split_frame
from cxr.params import Params
from cxr.steps.context import RunContext
from cxr.tracking import runs as tracking


def augment_step(ctx: RunContext, dataset_dir: str, out_dir: str, params: Params) -> dict:
    """Record the augmentation the training step applies and a preview grid of it."""
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "augment"):
        spec = augmentation_spec(params.augment)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "augmentation.json").write_text(json.dumps(spec, indent=2))
        frame = split_frame(read_manifest(dataset_dir), "train")
        write_preview(
            frame, dataset_dir, params.augment, params.train.image_size, out / "preview.png", seed=params.train.seed
        )
        mlflow.log_dict(spec, "augmentation.json")
        mlflow.log_artifact(str(out / "preview.png"))
    a = params.augment
    events.figure(
        f"rotation {a.rotation_deg}°, shift {a.width_shift}/{a.height_shift}, shear {a.shear}°, zoom {a.zoom}"
        + ((", image and mirror" if a.mirror_both else ", flip") if a.horizontal_flip else "")
        + " (train split, on the fly)"
    )
    return spec
