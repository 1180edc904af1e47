"""The evaluate step: val and test figures with intervals, the safety checks' figures, plots."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from cxr import events
from cxr.data.manifest import labels_of, read_manifest, source_rows, split_frame
from cxr.evaluation.cross_validation import OOF_FILE
from cxr.evaluation.external import evaluate_external
from cxr.evaluation.metrics import flat_with_intervals
from cxr.evaluation.shortcut import probe, verdict
from cxr.evaluation.splits import evaluate_ood_set, evaluate_split, split_batches
from cxr.inference.classifier import load_model_dir
from cxr.params import Params
from cxr.steps.context import RunContext, finite, log_to_parent
from cxr.tracking import runs as tracking
from cxr.tracking.datasets import source_of, split_datasets
from cxr.tracking.record import RunRecord


def evaluate_step(ctx: RunContext, dataset_dir: str, model_dir: str, out_dir: str, params: Params) -> dict:
    """Score val and test splits; log metrics (val_*, test_*) and plots; measure the input gate on the
    offline out-of-distribution set (ood_*); returns {split: report}."""
    out = Path(out_dir)
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "evaluate"):
        classifier = load_model_dir(model_dir)
        frame = read_manifest(dataset_dir)
        attach = _model_metrics(ctx, dataset_dir)
        reports = _score_splits(classifier, Path(model_dir), frame, dataset_dir, out, params, attach)
        safety = _shortcut_and_scope(ctx, classifier, frame, dataset_dir, reports, out)
        safety |= _external(classifier, params.evaluate.external_dir, out)
        ood = evaluate_ood_set(classifier, out, params.train.seed)
        ood_metrics = _log_ood(ctx, ood, out)
    summary = {f"{s}_{k}": v for s, r in reports.items() for k, v in finite(r["metrics"]).items()}
    summary |= ood_metrics | finite(safety)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    log_to_parent(ctx, summary)
    events.figure("; ".join(_figures(reports, ood, safety)))
    return reports


def _model_metrics(ctx: RunContext, dataset_dir: str) -> dict:
    """How a split's metrics are attached to the logged model (the train step's, named on the pipeline run)
    and to the split's dataset, so the Models tab compares models: {split: log_metrics keyword arguments}."""
    run = RunRecord.from_run(mlflow.MlflowClient().get_run(ctx.parent_run_id))
    model_uri = run.model_uri
    if not model_uri.startswith("models:/m-"):
        return {}
    datasets = split_datasets(dataset_dir, source_of(run.lineage))
    return {split: {"model_id": model_uri.removeprefix("models:/"), "dataset": ds} for split, ds in datasets.items()}


def _score_splits(classifier, model: Path, frame, dataset_dir: str, out: Path, params: Params, attach: dict) -> dict:
    """Each split's report (validation: the out-of-fold predictions when the model was cross-validated),
    its metrics (on the logged model too, `attach`) and plots logged to the active run."""
    reports = {}
    oof = out_of_fold(model, frame)
    for split in ("val", "test"):
        part = split_frame(frame, split) if split == "test" or oof is None else oof[0]
        if part.empty:
            continue
        report = evaluate_split(
            classifier,
            part,
            dataset_dir,
            split,
            out,
            params.evaluate.bootstrap_samples,
            params.evaluate.prevalence,
            *(oof[1:] if split == "val" and oof is not None else ()),
        )
        reports[split] = report
        report["metrics"] = flat_with_intervals(report["metrics"], report["ci95"])
        mlflow.log_metrics({f"{split}_{k}": v for k, v in finite(report["metrics"]).items()}, **attach.get(split, {}))
        for suffix in ("confusion.png", "roc.png", "reliability.png", "report.json"):
            mlflow.log_artifact(str(out / f"{split}_{suffix}"), artifact_path="evaluation")
    return reports


def _log_ood(ctx: RunContext, ood: dict, out: Path) -> dict:
    """The input gate's figures on the out-of-distribution set, logged (none when the model has no gate)."""
    if not ood:
        return {}
    mlflow.MlflowClient().set_tag(ctx.parent_run_id, "ood.method", ood["detector"]["method"])
    metrics = {"ood_reject_rate": ood["reject_rate"], "ood_n": ood["n"], "ood_threshold": ood["threshold"]}
    metrics |= {f"ood_reject_rate_{k}": v for k, v in ood["reject_rate_by_kind"].items()}
    mlflow.log_metrics(metrics)
    mlflow.log_artifact(str(out / "ood_report.json"), artifact_path="evaluation")
    return metrics


def _figures(reports: dict, ood: dict, safety: dict) -> list[str]:
    """The step's one-line summary, part by part."""
    figures = [
        f"{s} F1 {r['metrics']['f1']:.2f} [{r['ci95']['f1'][0]:.2f}, {r['ci95']['f1'][1]:.2f}] "
        f"on {r['metrics']['n']} images"
        for s, r in reports.items()
    ]
    if ood:
        rates = {s: r["metrics"].get("ood_accept_rate") for s, r in reports.items()}
        accepted = ", ".join(f"{rate:.0%} of {s}" for s, rate in rates.items() if rate is not None)
        figures.append(f"input gate accepts {accepted}, refuses {ood['reject_rate']:.0%} of {ood['n']} non-X-rays")
    if "scope_refuse_rate" in safety:
        figures.append(f"scope check refuses {safety['scope_refuse_rate']:.0%} of {safety['scope_n']:.0f} children")
    if "test_lungs_hidden_auc" in safety:
        figures.append(f"test AUC with lungs hidden {safety['test_lungs_hidden_auc']:.2f}")
    if "external_specificity" in safety:
        figures.append(
            f"external specificity {safety['external_specificity']:.2f} [{safety['external_specificity_ci_low']:.2f}, "
            f"{safety['external_specificity_ci_high']:.2f}] on {safety['external_n']:.0f} normals from another source"
        )
    return figures


def _shortcut_and_scope(ctx: RunContext, classifier, frame, dataset_dir: str, reports: dict, out: Path) -> dict:
    """The shortcut probe on the test split (cxr/evaluation/shortcut.py) and the scope check's own figures (children
    refused, cross-fitted, cxr/safety/population.py): logged to the step's run, tagged on the parent; returns the
    metrics (test_lungs_hidden_auc, ..., scope_refuse_rate, scope_n, scope_threshold)."""
    metrics: dict[str, float] = {}
    client = mlflow.MlflowClient()
    test = split_frame(frame, "test")
    if "test" in reports and not test.empty:
        y_test = labels_of(test, classifier.config.positive_class)
        views = probe(classifier, split_batches(test, dataset_dir), y_test)
        for view, figures in views.items():
            metrics |= {f"test_{view}_{k}": float(v) for k, v in figures.items() if k != "n"}
        (out / "shortcut_report.json").write_text(json.dumps(views, indent=2))
        mlflow.log_artifact(str(out / "shortcut_report.json"), artifact_path="evaluation")
        full = reports["test"]["metrics"]["roc_auc"]
        sentence = verdict(full, metrics["test_lungs_hidden_roc_auc"], metrics["test_lungs_only_roc_auc"])
        client.set_tag(ctx.parent_run_id, "shortcut.verdict", sentence)
        metrics["test_lungs_hidden_auc"] = metrics.pop("test_lungs_hidden_roc_auc")
        metrics["test_lungs_only_auc"] = metrics.pop("test_lungs_only_roc_auc")
    if classifier.scope is not None:
        meta = classifier.scope.meta
        metrics |= {
            "scope_refuse_rate": float(meta["reference_refuse_rate"]),
            "scope_n": float(meta["n_reference"]),
            "scope_threshold": float(classifier.scope.threshold),
        }
        client.set_tag(ctx.parent_run_id, "scope.method", classifier.scope.summary()["method"])
    if metrics:
        mlflow.log_metrics(finite(metrics))
    return metrics


def _external(classifier, folder: str, out: Path) -> dict:
    """The external check (cxr/evaluation/external.py), logged to the step's run; returns its metrics."""
    report = evaluate_external(classifier, folder, out)
    if not report:
        return {}
    spec, shift, refused = report["specificity"], report["shift_warned"], report["refused"]
    metrics = {
        "external_specificity": spec["value"],
        "external_specificity_ci_low": spec["ci95"][0],
        "external_specificity_ci_high": spec["ci95"][1],
        "external_n": float(report["n"]),
        "external_shift_warn_rate": shift["value"],
        "external_refuse_rate": refused["value"],
    }
    mlflow.log_metrics(finite(metrics))
    mlflow.log_artifact(str(out / "external_report.json"), artifact_path="evaluation")
    return metrics


def out_of_fold(model_dir: Path, frame):
    """With cross-validation (the train step wrote oof.json): (the manifest rows it covers, their
    out-of-fold probabilities, a sentence naming them), which stand for the validation split; else None."""
    path = Path(model_dir) / OOF_FILE
    if not path.is_file():
        return None
    oof = json.loads(path.read_text())
    by_source = {row["source"]: row["probability"] for row in oof["predictions"]}
    rows = source_rows(frame, by_source)
    return rows, [by_source[s] for s in rows["source"]], oof["validation"]
