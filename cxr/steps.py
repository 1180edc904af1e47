"""The pipeline steps as plain functions: core work + MLflow logging in a child run of the pipeline run.

Kubeflow components, DVC stages and the CLI call these; they hold no orchestration logic themselves.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cxr import events, tracking
from cxr.params import Params
from cxr.signature import TrainingSignature


@dataclass(frozen=True)
class RunContext:
    """Where a step logs: the tracking store and the pipeline's parent run."""

    tracking_uri: str
    parent_run_id: str


def _finite(metrics: dict) -> dict:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def resolve_data(data_dir: str, requested_version: str, dvc_remote: str = "", scratch: str = "") -> tuple[str, str]:
    """The folder a run reads and its DVC version, computed from the files themselves.

    With `dvc_remote` (a cluster run) the folder is fetched at `requested_version` from that remote into
    `scratch`; otherwise `data_dir` is read where it is (a checkout or a mounted volume).
    """
    from cxr.data_version import dir_md5, fetch_version
    from cxr.errors import CxrError

    if dvc_remote:
        data_dir = str(fetch_version(dvc_remote, requested_version, scratch))
    if not Path(data_dir).is_dir():
        raise CxrError(
            f"Data folder {data_dir} does not exist; pass a folder of class sub-folders "
            "(or `dvc pull` the bundled sample, or give the pipeline a DVC remote to fetch from)."
        )
    actual = dir_md5(data_dir)
    if requested_version not in ("", "unversioned", actual):
        print(f"data version: read {actual}, not the requested {requested_version} (the folder differs from it)")
    return data_dir, actual


def ingest_step(ctx: RunContext, data_dir: str, dataset_dir: str, params: Params) -> dict:
    import mlflow

    from cxr.data import ingest

    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "ingest"):
        records = ingest(data_dir, dataset_dir, params.ingest)
        counts: dict[str, int] = {}
        for r in records:
            counts[f"n_{r.split}_{r.label}"] = counts.get(f"n_{r.split}_{r.label}", 0) + 1
        summary = {"n_images": len(records), "n_undecodable": sum(not r.decodes for r in records), **counts}
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(Path(dataset_dir) / "manifest.csv"))
    _log_to_parent(ctx, summary)
    splits = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    events.figure(f"{len(records)} images: " + ", ".join(f"{n} {s}" for s, n in splits.items()))
    return summary


def _log_to_parent(ctx: RunContext, metrics: dict) -> None:
    """Summary figures on the pipeline's parent run too, where the UI's compare view reads them."""
    import mlflow

    now = int(time.time() * 1000)
    batch = [mlflow.entities.Metric(k, float(v), now, 0) for k, v in metrics.items()]
    mlflow.MlflowClient().log_batch(ctx.parent_run_id, metrics=batch)


def validate_step(ctx: RunContext, dataset_dir: str, report_dir: str, params: Params):
    """Run the suite, log its data docs; raise CxrError (naming files) when it fails."""
    import mlflow

    from cxr.data import read_manifest
    from cxr.validation import require_valid, validate_manifest

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


def augment_step(ctx: RunContext, dataset_dir: str, out_dir: str, params: Params) -> dict:
    """Record the augmentation the training step applies and a preview grid of it."""
    import mlflow

    from cxr.augment import augmentation_spec, write_preview
    from cxr.data import read_manifest, split_frame

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


def train_step(ctx: RunContext, dataset_dir: str, model_dir: str, params: Params) -> str:
    """Train and log the MLflow model; returns its model URI."""
    import mlflow

    from cxr.pyfunc import log_model, read_config
    from cxr.train import train_model

    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "train"):
        result = train_model(dataset_dir, params, model_dir)
        mlflow.log_metrics(
            {"best_epoch": result.best_epoch, "gpu": int(result.gpu), "mixed_precision": int(result.mixed_precision)}
            | _finite(result.metrics)
        )
        config = read_config(model_dir)
        mlflow.set_tag("weights", params.train.weights)
        mlflow.set_tag("fitted_on", config.get("fitted_on", ""))
        model_uri = log_model(model_dir).model_uri  # models:/m-<id>; runs:/<run>/model resolves to it too
    client = mlflow.MlflowClient()
    client.set_tag(ctx.parent_run_id, "model_uri", model_uri)
    for key in ("threshold_method", "temperature_method", "validation"):
        client.set_tag(ctx.parent_run_id, key, config.get(key, ""))
    _log_to_parent(ctx, _finite(result.metrics))
    m = result.metrics
    calibrated = (
        f"temperature {m['temperature']:.2f}: ECE {m['ece_before_calibration']:.3f} -> {m['ece_after_calibration']:.3f}"
        if config.get("temperature_method", "").split(" ")[0] != "1"
        else "temperature not fitted (too few held-out images)"
    )
    if "cv_f1_mean" in m:
        events.figure(
            f"{int(m['cv_folds'])}-fold CV F1 {m['cv_f1_mean']:.2f} ± {m['cv_f1_std']:.2f}; final model on all "
            f"train + val images; {calibrated}"
        )
    else:
        events.figure(f"best epoch {result.best_epoch}; {calibrated}")
    return model_uri


def evaluate_step(ctx: RunContext, dataset_dir: str, model_dir: str, out_dir: str, params: Params) -> dict:
    """Score val and test splits; log metrics (val_*, test_*) and plots; measure the input gate on the
    offline out-of-distribution set (ood_*); returns {split: report}."""
    import mlflow

    from cxr.data import read_manifest, split_frame
    from cxr.evaluate import evaluate_ood_set, evaluate_split
    from cxr.pyfunc import load_model_dir

    out = Path(out_dir)
    reports = {}
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "evaluate"):
        model = Path(model_dir)
        classifier = load_model_dir(model)
        frame = read_manifest(dataset_dir)
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
            for name, (low, high) in report["ci95"].items():
                report["metrics"][f"{name}_ci_low"], report["metrics"][f"{name}_ci_high"] = low, high
            mlflow.log_metrics({f"{split}_{k}": v for k, v in _finite(report["metrics"]).items()})
            for suffix in ("confusion.png", "roc.png", "reliability.png", "report.json"):
                mlflow.log_artifact(str(out / f"{split}_{suffix}"), artifact_path="evaluation")
        safety = _shortcut_and_scope(ctx, classifier, frame, dataset_dir, reports, out)
        ood = evaluate_ood_set(classifier, out, params.train.seed)
        ood_metrics = {}
        if ood:
            mlflow.MlflowClient().set_tag(ctx.parent_run_id, "ood.method", ood["detector"]["method"])
            ood_metrics = {"ood_reject_rate": ood["reject_rate"], "ood_n": ood["n"], "ood_threshold": ood["threshold"]}
            ood_metrics |= {f"ood_reject_rate_{k}": v for k, v in ood["reject_rate_by_kind"].items()}
            mlflow.log_metrics(ood_metrics)
            mlflow.log_artifact(str(out / "ood_report.json"), artifact_path="evaluation")
    summary = {f"{s}_{k}": v for s, r in reports.items() for k, v in _finite(r["metrics"]).items()}
    summary |= ood_metrics | _finite(safety)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    _log_to_parent(ctx, summary)
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
    events.figure("; ".join(figures))
    return reports


def _shortcut_and_scope(ctx: RunContext, classifier, frame, dataset_dir: str, reports: dict, out: Path) -> dict:
    """The shortcut probe on the test split (cxr/shortcut.py) and the scope check's own figures (children
    refused, cross-fitted, cxr/population.py): logged to the step's run, tagged on the parent; returns the
    metrics (test_lungs_hidden_auc, ..., scope_refuse_rate, scope_n, scope_threshold)."""
    import mlflow

    from cxr.augment import labels_of
    from cxr.data import split_frame
    from cxr.evaluate import _split_batches
    from cxr.shortcut import probe, verdict

    metrics: dict[str, float] = {}
    client = mlflow.MlflowClient()
    test = split_frame(frame, "test")
    if "test" in reports and not test.empty:
        y_test = labels_of(test, classifier.config["positive_class"])
        views = probe(classifier, _split_batches(test, dataset_dir), y_test)
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
        mlflow.log_metrics(_finite(metrics))
    return metrics


def out_of_fold(model_dir: Path, frame):
    """With cross-validation (the train step wrote oof.json): (the manifest rows it covers, their
    out-of-fold probabilities, a sentence naming them), which stand for the validation split; else None."""
    from cxr.cv import OOF_FILE
    from cxr.data import source_rows

    path = Path(model_dir) / OOF_FILE
    if not path.is_file():
        return None
    oof = json.loads(path.read_text())
    by_source = {row["source"]: row["probability"] for row in oof["predictions"]}
    rows = source_rows(frame, by_source)
    return rows, [by_source[s] for s in rows["source"]], oof["validation"]


def split_evidence(report: dict):
    """The gate's evidence from an evaluation report: F1, its 95% interval and the class counts."""
    from cxr.gate import Evidence

    m, (low, high) = report["metrics"], report["ci95"]["f1"]
    return Evidence(float(m["f1"]), float(low), float(high), int(m["tp"] + m["fn"]), int(m["tn"] + m["fp"]))


def champion_on(dataset_dir: str, params: Params, candidate: dict):
    """The current champion re-scored on this run's validation images, paired with the candidate's
    predictions on the same images (None without a champion)."""
    import numpy as np

    from cxr.augment import labels_of
    from cxr.compare import paired_bootstrap_delta
    from cxr.data import read_manifest, source_rows
    from cxr.evaluate import compute_metrics, predict_split
    from cxr.gate import PairedDelta
    from cxr.pyfunc import load_pyfunc
    from cxr.registry import CHAMPION, alias_version

    champion = alias_version(params.register.model_name, CHAMPION)
    if champion is None:
        return None
    classifier = load_pyfunc(f"models:/{params.register.model_name}@{CHAMPION}")
    # the images the candidate's validation figures rest on: the val split, or with cross-validation
    # the pooled train + val images (out-of-fold for the candidate; a champion trained on them is favoured)
    by_source = {row["source"]: row["probability"] for row in candidate["predictions"]}
    frame = source_rows(read_manifest(dataset_dir), by_source)
    p_champion = predict_split(classifier, frame, dataset_dir)
    p_candidate = np.array([by_source[s] for s in frame["source"]])
    y = labels_of(frame, classifier.config["positive_class"])
    t_champion, t_candidate = float(classifier.config["threshold"]), float(candidate["metrics"]["threshold"])
    champion_f1 = compute_metrics(y, p_champion, t_champion)["f1"]
    delta = compute_metrics(y, p_candidate, t_candidate)["f1"] - champion_f1
    low, high = paired_bootstrap_delta(
        y, p_champion, t_champion, p_candidate, t_candidate, samples=params.evaluate.bootstrap_samples
    )
    return PairedDelta(str(champion.version), float(champion_f1), float(delta), low, high)


def gate_step(ctx: RunContext, dataset_dir: str, report_dir: str, params: Params):
    """Apply the gate to the evaluation in `report_dir` (val decides, test is recorded), against the
    champion re-scored on the same validation images; record the decision on the run."""
    import mlflow

    from cxr.gate import decide_promotion
    from cxr.registry import alias_version

    reports = {
        split: json.loads((Path(report_dir) / f"{split}_report.json").read_text())
        for split in ("val", "test")
        if (Path(report_dir) / f"{split}_report.json").is_file()
    }
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "gate"):
        champion = champion_on(dataset_dir, params, reports["val"])
        challenger = alias_version(params.register.model_name, params.register.alias)
        decision = decide_promotion(
            split_evidence(reports["val"]),
            params.gate.min_f1,
            params.gate.min_delta,
            params.gate.min_val_per_class,
            champion,
            split_evidence(reports["test"]) if "test" in reports else None,
            None if challenger is None else str(challenger.version),
        )
        mlflow.log_dict(json.loads(decision.to_json()), "gate.json")
    client = mlflow.MlflowClient()
    for key, value in (("outcome", decision.outcome), ("passed", str(decision.passed).lower())):
        client.set_tag(ctx.parent_run_id, f"gate.{key}", value)
    client.set_tag(ctx.parent_run_id, "gate.reason", decision.reason)
    client.set_tag(ctx.parent_run_id, "gate.advice", decision.advice)
    if champion is not None:
        for key, value in zip(tracking.GATE_METRICS, (champion.champion_f1, champion.low), strict=True):
            client.log_metric(ctx.parent_run_id, key, value)
    events.figure(decision.outcome.upper())
    return decision


def register_step(ctx: RunContext, model_uri: str, decision_json: str, params: Params, tags: dict) -> str:
    """Register the gated model as a new version (alias, lineage and metric tags, model card)."""
    import getpass

    import mlflow

    from cxr.gate import GateDecision
    from cxr.model_card import build_card, render_markdown
    from cxr.registry import gate_tags, register_candidate

    decision = GateDecision.from_json(decision_json)
    name = params.register.model_name
    who = os.environ.get("MLFLOW_TRACKING_USERNAME") or os.environ.get("USER") or getpass.getuser()  # the login
    with tracking.step_run(ctx.tracking_uri, ctx.parent_run_id, "register"):
        client = mlflow.MlflowClient()
        parent = client.get_run(ctx.parent_run_id)
        metrics = parent.data.metrics
        keys = ("f1", "f1_ci_low", "f1_ci_high", "accuracy", "sensitivity", "specificity", "threshold")
        summary = {
            f"{split}_{k}": f"{metrics[f'{split}_{k}']:.6f}"
            for split in ("val", "test")
            for k in keys
            if f"{split}_{k}" in metrics
        }
        summary["threshold_method"] = parent.data.tags.get("threshold_method", "")
        version, note = register_candidate(
            model_uri,
            name,
            params.register.alias,
            {
                **tags,
                **summary,
                "run_id": ctx.parent_run_id,
                "profile": params.profile,
                "registered_by": who,
                **TrainingSignature.of(tags.get("data_version", ""), params).tags(),
                "weights": params.train.weights,
                "positive_class": params.ingest.positive_class,
            },
            decision,
        )
        number = str(version.version)
        card = build_card(
            name,
            number,
            parent.data.params,
            metrics,
            {
                **tags,
                **summary,
                **gate_tags(decision),
                "profile": params.profile,
                "run_id": ctx.parent_run_id,
                "ood.method": parent.data.tags.get("ood.method", ""),
                **{k: parent.data.tags.get(k, "") for k in ("validation", "temperature_method")},
            },
        )
        stem = f"model_cards/{name}-v{number}"
        for suffix, text in ((".md", render_markdown(card, parent.data.params)), (".json", json.dumps(card, indent=2))):
            mlflow.log_text(text, stem + suffix)
            client.log_text(ctx.parent_run_id, text, stem + suffix)
        client.set_model_version_tag(name, number, "model_card", f"runs:/{ctx.parent_run_id}/{stem}.md")
        client.set_model_version_tag(name, number, "model_card_json", f"runs:/{ctx.parent_run_id}/{stem}.json")
        mlflow.set_tag("registered_version", number)
        if note:
            mlflow.set_tag("alias.skipped", note)
    client.set_tag(ctx.parent_run_id, "registered_version", number)
    tracking.finish_pipeline_run(ctx.tracking_uri, ctx.parent_run_id)
    events.figure(f"{name} version {number}" + (f" ({note})" if note else f" as @{params.register.alias}"))
    return number


def reject_step(ctx: RunContext, decision_json: str) -> str:
    """The gate failed: register nothing, record why on the pipeline run, close it."""
    import mlflow

    from cxr.gate import GateDecision

    decision = GateDecision.from_json(decision_json)
    mlflow.set_tracking_uri(ctx.tracking_uri)
    mlflow.MlflowClient().set_tag(ctx.parent_run_id, "registered_version", "none")
    tracking.finish_pipeline_run(ctx.tracking_uri, ctx.parent_run_id)
    events.figure("nothing registered")
    return decision.reason
