"""Compare two registered versions on the same validation split, with a paired bootstrap CI on ΔF1."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np

from cxr.aliases import CHAMPION
from cxr.data.manifest import labels_of, read_manifest, source_rows, split_frame
from cxr.errors import CxrError
from cxr.evaluation.live import MEASURES, measure_text
from cxr.evaluation.metrics import COMPARED_METRICS, compute_metrics, confusion_matrix_table
from cxr.evaluation.splits import predict_split
from cxr.model.config import ModelConfig
from cxr.release.gate import PairedDelta, disagreement, evidence_from_tags
from cxr.release.promotion import aliases_by_version, resolve_version, with_interval
from cxr.release.registry import alias_version
from cxr.tracking.record import Lineage


def _step_run(parent_run_id: str, step: str):
    runs = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.step = '{step}'",
    )
    return runs[0] if runs else None


def recorded_split(parent_run_id: str):
    """(validation manifest rows, recorded validation predictions or None, their threshold) of a
    version's pipeline run."""
    ingest = _step_run(parent_run_id, "ingest")
    if ingest is None:
        raise CxrError(f"Run {parent_run_id} has no ingest step; it was not registered by the pipeline.")
    path = mlflow.artifacts.download_artifacts(run_id=ingest.info.run_id, artifact_path="manifest.csv")
    val = split_frame(read_manifest(Path(path).parent), "val")
    evaluate = _step_run(parent_run_id, "evaluate")
    predictions, threshold = None, None
    if evaluate is not None:
        path = mlflow.artifacts.download_artifacts(
            run_id=evaluate.info.run_id, artifact_path="evaluation/val_report.json"
        )
        report = json.loads(Path(path).read_text())
        predictions = {p["source"]: p["probability"] for p in report["predictions"]}
        threshold = float(report["metrics"]["threshold"])
    return val.sort_values("source").reset_index(drop=True), predictions, threshold


def paired_bootstrap_delta(y, p_a, t_a, p_b, t_b, samples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of F1(B) - F1(A), resampling the same images for both."""
    rng = np.random.default_rng(seed)
    n, deltas = len(y), []
    for _ in range(samples if n else 0):
        idx = rng.integers(0, n, n)
        deltas.append(compute_metrics(y[idx], p_b[idx], t_b)["f1"] - compute_metrics(y[idx], p_a[idx], t_a)["f1"])
    return [float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))] if deltas else [np.nan] * 2


def paired_f1(y, p_a, t_a, p_b, t_b, samples: int) -> tuple[float, float, list[float]]:
    """(F1 of A, F1(B) - F1(A), its 95% paired-bootstrap interval) on the same images."""
    f1_a = compute_metrics(y, p_a, t_a)["f1"]
    delta = compute_metrics(y, p_b, t_b)["f1"] - f1_a
    return float(f1_a), float(delta), paired_bootstrap_delta(y, p_a, t_a, p_b, t_b, samples)


def _load(version):
    from cxr.inference.classifier import load_pyfunc  # here: the gate step starts without TensorFlow

    return load_pyfunc(
        version.source if version.source.startswith("models:/") else f"models:/{version.name}/{version.version}"
    )


def _score(version, frame, data_dir: Path) -> tuple[np.ndarray, ModelConfig]:
    """A version's probabilities on manifest rows whose originals (`source`) are under data_dir."""
    missing = [s for s in frame["source"] if not (data_dir / s).is_file()]
    if missing:
        raise CxrError(
            f"Re-scoring needs the validation images under {data_dir}, but {missing[0]} "
            f"(and {len(missing) - 1} more) are missing; pass --data with the dataset folder."
        )
    classifier = _load(version)
    return predict_split(classifier, frame.assign(file=frame["source"]), data_dir), classifier.config


def compare(name: str, ref_a: str, ref_b: str, data_dir: Path, samples: int = 2000) -> dict:
    """Both versions on version A's validation split: recorded predictions when both runs used that
    same split, else both re-scored from the images in data_dir."""
    a, b = resolve_version(name, ref_a), resolve_version(name, ref_b)
    frame_a, pred_a, threshold_a = recorded_split(Lineage.from_tags(a.tags).run_id)
    frame_b, pred_b, threshold_b = recorded_split(Lineage.from_tags(b.tags).run_id)
    same = set(frame_a["sha256"]) == set(frame_b["sha256"])
    thresholds = (threshold_a, threshold_b)
    if same and pred_a is not None and pred_b is not None:
        by_sha_b = dict(zip(frame_b["sha256"], frame_b["source"], strict=True))
        p_a = np.array([pred_a[s] for s in frame_a["source"]])
        p_b = np.array([pred_b[by_sha_b[h]] for h in frame_a["sha256"]])
        how = "recorded predictions (both versions were evaluated on the same validation split)"
    else:
        p_a, config_a = _score(a, frame_a, data_dir)
        p_b, config_b = _score(b, frame_a, data_dir)
        thresholds = (config_a.threshold, config_b.threshold)
        how = f"re-scored on version {a.version}'s validation split from {data_dir} (the recorded splits differ)"
    positive = a.tags.get("positive_class") or "COVID"
    y = labels_of(frame_a, positive)
    negative = next((lab for lab in sorted(set(frame_a["label"])) if lab != positive), f"not-{positive}")
    out = {"split": how, "n": int(len(y)), "positive_class": positive, "versions": {}}
    for version, p, t in ((a, p_a, thresholds[0]), (b, p_b, thresholds[1])):
        m = compute_metrics(y, p, t)
        val, test = evidence_from_tags(version.tags, "val"), evidence_from_tags(version.tags, "test")
        out["versions"][str(version.version)] = {
            "aliases": aliases_by_version(name).get(str(version.version), []),
            "metrics": {k: m[k] for k in COMPARED_METRICS},
            "confusion_matrix": confusion_matrix_table(m, negative, positive),
            "recorded": {"val_f1": with_interval(val), "test_f1": with_interval(test)},
            "warning": disagreement(val, test),
        }
    _, delta, ci95 = paired_f1(y, p_a, thresholds[0], p_b, thresholds[1], samples)
    out["delta_f1"] = {"b_minus_a": delta, "ci95": ci95}
    return out


def champion_on(name: str, dataset_dir: str, candidate: dict, samples: int = 2000) -> PairedDelta | None:
    """The current champion re-scored on the images a candidate's validation figures rest on (its
    evaluation report: the val split, or with cross-validation the pooled train + val images, out-of-fold
    for the candidate, so a champion trained on them is favoured), paired with the candidate's
    predictions there. None without a champion."""
    champion = alias_version(name, CHAMPION)
    if champion is None:
        return None
    classifier = _load(champion)
    by_source = {row["source"]: row["probability"] for row in candidate["predictions"]}
    frame = source_rows(read_manifest(dataset_dir), by_source)
    p_champion = predict_split(classifier, frame, dataset_dir)
    p_candidate = np.array([by_source[s] for s in frame["source"]])
    y = labels_of(frame, classifier.config.positive_class)
    t_candidate = float(candidate["metrics"]["threshold"])
    champion_f1, delta, (low, high) = paired_f1(
        y, p_champion, classifier.config.threshold, p_candidate, t_candidate, samples
    )
    return PairedDelta(str(champion.version), champion_f1, delta, low, high)


def format_comparison(result: dict) -> str:
    (va, ra), (vb, rb) = list(result["versions"].items())
    lines = [
        f"Split: {result['split']}; n = {result['n']}; positive class {result['positive_class']}",
        "",
        f"{'metric':<12} {'v' + va:>10} {'v' + vb:>10}",
    ]
    for metric in COMPARED_METRICS:
        lines.append(f"{metric:<12} {ra['metrics'][metric]:>10.4f} {rb['metrics'][metric]:>10.4f}")
    for version, r in ((va, ra), (vb, rb)):
        labels, matrix = r["confusion_matrix"]["labels"], r["confusion_matrix"]["matrix"]
        lines += ["", f"v{version} confusion matrix (rows true, columns predicted: {', '.join(labels)}):"]
        lines += [f"  {labels[i]:<8} {row[0]:>5} {row[1]:>5}" for i, row in enumerate(matrix)]
    lines += ["", "Recorded at registration, each on its own run's splits (F1 with 95% CI):"]
    for version, r in ((va, ra), (vb, rb)):
        recorded = r.get("recorded", {})
        lines.append(
            f"  v{version}: validation {recorded.get('val_f1') or 'n/a'}; test {recorded.get('test_f1') or 'n/a'}"
        )
        if r.get("warning"):
            lines.append(f"  warning v{version}: {r['warning']}")
    in_use = [(v, r["in_use"]) for v, r in ((va, ra), (vb, rb)) if r.get("in_use")]
    if in_use:
        lines += ["", "In use, from radiologists' findings (95% Wilson CI; n = predictions with a finding):"]
        for version, figures in in_use:
            shown = [
                f"{m} {measure_text(figures[m])} (n={figures[m]['n']})"
                for m in MEASURES
                if figures[m]["value"] is not None
            ]
            lines.append(f"  v{version}: {'; '.join(shown) or 'no findings recorded yet'}")
    d = result["delta_f1"]
    lines += [
        "",
        f"F1 v{vb} - v{va}: {d['b_minus_a']:+.4f} (paired bootstrap 95% CI {d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f})",
    ]
    return "\n".join(lines)
