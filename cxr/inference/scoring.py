"""Prediction on files with any MLflow model URI; the same classifier object the web app uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr.data.images import decode_image
from cxr.errors import CxrError, not_a_file
from cxr.safety.dicom_scope import dicom_refusal

NO_GATE = (
    "this model version has no input gate (trained before it existed): nothing checked that the image is a "
    "frontal chest X-ray"
)


def _refusal_for(classifier, distance: float) -> str:
    gate = classifier.gate
    return (
        f"the image does not look like the frontal chest X-rays this model was trained on (out-of-distribution "
        f"score {distance:.1f} > threshold {gate.threshold:.1f}); check that it is a frontal chest radiograph"
    )


def _shift_warning(classifier, distance: float) -> str:
    gate = classifier.gate
    return (
        f"this film is unlike the films the model was trained on (shift score {distance:.1f} > "
        f"{gate.shift_threshold:.1f}, a level {1 - gate.shift_quantile:.0%} of held-out films from the training "
        "sources reach): it may come from a hospital, scanner or processing the model was not validated on, "
        "where its answers can be wrong"
    )


def assess(classifier, items: list[tuple[str, bytes]], allow_ood: bool = False, strict: bool = False) -> list[dict]:
    """One row per (name, bytes): the DICOM header check, then decoding, then one batched pass for the
    probability, the input gate's score and the population scope check's. A refused image gets
    `in_distribution` (input gate) or `in_scope` (population: adults) false, `probability` and `label`
    null and a `reason`; with `allow_ood` it is scored anyway and the reason is kept as `warning`.
    Undecodable input gets `error` (`strict`: its CxrError is raised, with its kind). No image,
    file name or DICOM field is logged."""
    prepared = prepare(items, allow_ood, strict)
    rows = score(classifier, *prepared, allow_ood)
    for row in rows:
        row.pop("projection", None)  # what the web app records for drift detection, not an answer
    return rows


def prepare(items: list[tuple[str, bytes]], allow_ood: bool = False, strict: bool = False):
    """The model-free half of `assess`: header checks and decoding -> (rows, arrays, row index of each array)."""
    rows, arrays, index = [], [], []
    for name, data in items:
        row = {"file": name}
        rows.append(row)
        try:
            refusal = dicom_refusal(data, name) if data else None
            if refusal and not allow_ood:
                row.update(in_distribution=False, ood_score=None, probability=None, label=None, reason=refusal)
                continue
            arrays.append(decode_image(data, name)[0])
            index.append(len(rows) - 1)
            if refusal:
                row["warning"] = refusal
        except CxrError as exc:
            if strict:
                raise
            row["error"] = str(exc)
    return rows, arrays, index


def model_outputs(classifier, arrays: list) -> tuple:
    """One batched model pass over decoded images: (probabilities, input-gate scores, scope scores, the drift
    projections)."""
    return tensor_outputs(classifier, list(classifier.preprocess(arrays)))


def tensor_outputs(classifier, tensors: list) -> tuple:
    """`model_outputs` of images already preprocessed (`classifier.preprocess`), one tensor per image:
    the web app resizes in each request's thread and batches only the model call."""
    probabilities, features = classifier.assess_batch(np.stack(tensors))
    return (
        probabilities,
        classifier.ood_scores(features),
        classifier.scope_scores(features),
        classifier.projections(features),
    )


def score(classifier, rows: list[dict], arrays: list, index: list[int], allow_ood: bool = False) -> list[dict]:
    """The model half of `assess`: one batched pass, then the gate's decision on each prepared row."""
    if not arrays:
        return rows
    return decide(classifier, rows, index, model_outputs(classifier, arrays), allow_ood)


def decide(classifier, rows: list[dict], index: list[int], outputs: tuple, allow_ood: bool = False) -> list[dict]:
    """The checks' decisions and the label on each prepared row, from its images' `model_outputs`; each row
    keeps its drift projection under `projection` (a list; empty for a model without a drift reference)."""
    probabilities, distances, scope_scores, projections = outputs
    threshold = classifier.config.threshold
    for i, probability, distance, scope_score, projection in zip(
        index, probabilities, distances, scope_scores, projections, strict=True
    ):
        row = rows[i]
        row["projection"] = [round(float(x), 5) for x in projection]
        gated = classifier.gate is not None
        accepted = bool(classifier.gate.accepts(distance)) if gated else None
        row.update(
            in_distribution=accepted if "warning" not in row else False,
            ood_score=round(float(distance), 3) if gated else None,
            ood_threshold=round(float(classifier.gate.threshold), 3) if gated else None,
        )
        reasons = [_refusal_for(classifier, float(distance))] if gated and not accepted else []
        if gated and accepted:
            row["shift"] = bool(classifier.gate.shifted(distance))
            if row["shift"]:
                row["warning"] = "; ".join(
                    filter(None, (row.get("warning"), _shift_warning(classifier, float(distance))))
                )
        if classifier.scope is not None:
            in_scope = bool(classifier.scope.accepts(scope_score))
            row.update(in_scope=in_scope, scope_score=round(float(scope_score), 4))
            reasons += [] if in_scope or reasons else [classifier.scope.refusal(float(scope_score))]
        if reasons:
            if not allow_ood:
                row.update(probability=None, label=None, reason=reasons[0])
                continue
            row["warning"] = "; ".join(filter(None, (row.get("warning"), *reasons)))
        if not gated:
            row["warning"] = "; ".join(filter(None, (row.get("warning"), NO_GATE)))
        row.update(
            probability=round(float(probability), 6),
            label=classifier.label_for(float(probability)),
            threshold=threshold,
        )
        if row.get("warning") and allow_ood and (row["in_distribution"] is False or row.get("in_scope") is False):
            row["warning"] = "scored anyway, as asked (allow-ood): " + row["warning"]
    return rows


def predict_files(classifier, files: list[Path], allow_ood: bool = False) -> list[dict]:
    """One result per file (see `assess`); a missing file is an `error` row."""
    items, missing = [], {}
    for i, path in enumerate(files):
        path = Path(path)
        if path.is_file():
            items.append((str(path), path.read_bytes()))
        else:
            missing[i] = {"file": str(path), "error": not_a_file(path)}
    assessed = iter(assess(classifier, items, allow_ood))
    return [missing[i] if i in missing else next(assessed) for i in range(len(files))]
