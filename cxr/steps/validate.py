"""The validate step: the great-expectations suite over the manifest."""

from __future__ import annotations

import mlflow

from cxr import events
from cxr.data.manifest import read_manifest
from cxr.data.validation import require_valid, validate_manifest
from cxr.params import Params
from cxr.steps.context import RunContext
from cxr.tracking import runs as tracking


def validate_step(ctx: RunContext, dataset_dir: str, report_dir: str, params: Params):
    """Run the suite, log its data docs; raise CxrError (naming files) when it fails."""
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "validate"):
        manifest = read_manifest(dataset_dir)
        outcome = validate_manifest(manifest, params.validate, report_dir, params.ingest.near_duplicate_bits)
        mlflow.log_metrics(
            {f"validation_{k}": float(v) for k, v in outcome.statistics.items() if isinstance(v, (int, float))}
        )
        mlflow.set_tag("validation.success", str(outcome.success).lower())
        mlflow.log_artifacts(report_dir, artifact_path="validation")
        if not outcome.success:
            mlflow.set_tag("validation.failures", " | ".join(outcome.failures)[:4000])
        stats = outcome.statistics
        events.figure(
            f"{stats.get('successful_expectations', 0)}/{stats.get('evaluated_expectations', 0)} expectations passed"
        )
        require_valid(outcome)
    return outcome
