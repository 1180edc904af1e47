"""The gate step: the promotion decision on validation F1, against the champion on the same images."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from cxr import events
from cxr.params import Params
from cxr.release.compare import champion_on
from cxr.release.gate import Evidence, SafetyBars, SafetyEvidence, decide_promotion
from cxr.release.registry import alias_version
from cxr.steps.context import RunContext
from cxr.tracking import record
from cxr.tracking import runs as tracking
from cxr.tracking.record import GateRecord


def split_evidence(report: dict):
    """The gate's evidence from an evaluation report: F1, its 95% interval and the class counts."""
    m, (low, high) = report["metrics"], report["ci95"]["f1"]
    return Evidence(float(m["f1"]), float(low), float(high), int(m["tp"] + m["fn"]), int(m["tn"] + m["fp"]))


def safety_evidence(report_dir) -> SafetyEvidence:
    """The shortcut probe's and the external check's figures from the evaluate step's metrics.json."""
    path = Path(report_dir) / "metrics.json"
    m = json.loads(path.read_text()) if path.is_file() else {}
    nan = float("nan")
    return SafetyEvidence(
        float(m.get("test_lungs_hidden_auc", nan)),
        float(m.get("external_specificity", nan)),
        float(m.get("external_specificity_ci_low", nan)),
        float(m.get("external_specificity_ci_high", nan)),
        int(m.get("external_n", 0)),
    )


def gate_step(ctx: RunContext, dataset_dir: str, report_dir: str, params: Params):
    """Apply the gate to the evaluation in `report_dir` (val decides, test is recorded), against the
    champion re-scored on the same validation images; record the decision on the run."""
    reports = {
        split: json.loads((Path(report_dir) / f"{split}_report.json").read_text())
        for split in ("val", "test")
        if (Path(report_dir) / f"{split}_report.json").is_file()
    }
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "gate"):
        champion = champion_on(
            params.register.model_name, dataset_dir, reports["val"], params.evaluate.bootstrap_samples
        )
        challenger = alias_version(params.register.model_name, params.register.alias)
        decision = decide_promotion(
            split_evidence(reports["val"]),
            params.gate.min_f1,
            params.gate.min_delta,
            params.gate.min_val_per_class,
            champion,
            split_evidence(reports["test"]) if "test" in reports else None,
            None if challenger is None else str(challenger.version),
            safety_evidence(report_dir),
            SafetyBars(params.gate.max_lungs_hidden_auc, params.gate.min_external_specificity),
        )
        mlflow.log_dict(json.loads(decision.to_json()), "gate.json")
    client = mlflow.MlflowClient()
    gate = GateRecord(decision.outcome, decision.reason, decision.advice, decision.passed)
    record.set_gate(client, ctx.parent_run_id, gate)
    if champion is not None:
        for key, value in zip(tracking.GATE_METRICS, (champion.champion_f1, champion.low), strict=True):
            client.log_metric(ctx.parent_run_id, key, value)
    events.figure(decision.outcome.upper())
    return decision


def run_link(mlflow_ui: str, parent_run_id: str) -> str:
    """The MLflow UI's page of the pipeline's run."""
    experiment_id = mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id
    return tracking.ui_url(mlflow_ui, experiment_id, parent_run_id)


def gate_summary(decision, mlflow_ui: str, parent_run_id: str) -> str:
    """The decision in Markdown, with the link to the MLflow run (the KFP UI shows it on the run's page)."""
    lines = [
        f"## Gate: {decision.outcome.upper()}",
        "",
        decision.reason,
        "",
        f"- Validation F1: {decision.candidate_f1:.3f} (threshold on its 95% lower bound: {decision.min_f1})",
    ]
    if decision.champion_version is not None:
        lines.append(
            f"- Champion: version {decision.champion_version}, F1 {decision.champion_f1:.3f} on the same images"
        )
    if decision.advice:
        lines += ["", f"Next: {decision.advice}"]
    lines += ["", f"[MLflow run {parent_run_id}]({run_link(mlflow_ui, parent_run_id)})", ""]
    return "\n".join(lines)
