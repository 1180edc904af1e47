"""The validate step: the great-expectations suite over the manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow

from cxr import events
from cxr.data.manifest import read_manifest
from cxr.data.validation import ValidationOutcome, require_valid, validate_manifest
from cxr.params import Params
from cxr.steps.context import RunContext
from cxr.tracking import runs as tracking

OUTCOME_FILE = "outcome.json"


def run_validation(dataset_dir: str, report_dir: str, params: Params) -> ValidationOutcome:
    """Run the suite; data docs and outcome.json in `report_dir` (no tracking: the kfp validate is cached)."""
    manifest = read_manifest(dataset_dir)
    outcome = validate_manifest(manifest, params.validate, report_dir, params.ingest.near_duplicate_bits)
    (Path(report_dir) / OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome), default=str))
    stats = outcome.statistics
    events.figure(
        f"{stats.get('successful_expectations', 0)}/{stats.get('evaluated_expectations', 0)} expectations passed"
    )
    return outcome


def read_outcome(report_dir: str) -> ValidationOutcome:
    return ValidationOutcome(**json.loads((Path(report_dir) / OUTCOME_FILE).read_text()))


def record_validation(ctx: RunContext, report_dir: str, outcome: ValidationOutcome) -> None:
    """The validate child run (statistics, data docs); raise CxrError (naming files) when the suite failed:
    the failure is recorded on the parent run as the validate step's."""
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "validate"):
        mlflow.log_metrics(
            {f"validation_{k}": float(v) for k, v in outcome.statistics.items() if isinstance(v, (int, float))}
        )
        mlflow.set_tag("validation.success", str(outcome.success).lower())
        mlflow.log_artifacts(report_dir, artifact_path="validation")
        if not outcome.success:
            mlflow.set_tag("validation.failures", " | ".join(outcome.failures)[:4000])
        require_valid(outcome)


def validate_step(ctx: RunContext, dataset_dir: str, report_dir: str, params: Params) -> ValidationOutcome:
    """Run the suite, log its data docs; raise CxrError (naming files) when it fails."""
    outcome = run_validation(dataset_dir, report_dir, params)
    record_validation(ctx, report_dir, outcome)
    return outcome
