"""The clinician's model card: built from what a run records, validated against its JSON schema."""

import json

from cxr.evaluation.metrics import predictive_values
from cxr.params import Params, load_params
from cxr.release.card import (
    DESCRIPTION_LIMIT,
    SCHEMA_PATH,
    build_card,
    card_problems,
    render_markdown,
    version_description,
)
from cxr.tracking.record import RunRecord

RECORDED = {
    "n_images": 40,
    **{f"n_{s}_{c}": n for s, n in (("train", 12), ("val", 4), ("test", 4)) for c in ("COVID", "Normal")},
    **{f"{s}_{k}": v for s in ("val", "test") for k, v in (("n", 8), ("tp", 3), ("fn", 1), ("fp", 1), ("tn", 3))},
    **{f"{s}_{m}{x}": v for s in ("val", "test") for m in ("f1", "accuracy", "sensitivity", "specificity")
       for x, v in (("", 0.75), ("_ci_low", 0.4), ("_ci_high", 1.0))},
    **{f"{s}_{m}": 0.5 for s in ("val", "test") for m in ("ppv", "npv", "precision", "roc_auc", "bce", "ece")},
    "val_threshold": 0.5,
    "ood_threshold": 109.0,
    "val_ood_accept_rate": 1.0,
    "test_ood_accept_rate": 1.0,
    "ood_reject_rate": 0.98,
    "ood_n": 50,
}  # fmt: skip
TAGS = {
    "threshold_method": "fixed at 0.5: too few validation images to tune on",
    "ood.method": "mahalanobis-ledoit-wolf on per-channel mean/std of VGG16 blocks 1-5",
    "data_version": "abc",
    "git_commit": "c1",
    "gate.outcome": "passed",
}


def record(metrics: dict, tags: dict, params: Params | None = None) -> RunRecord:
    """What register reads back from a pipeline run that recorded `metrics` and `tags`."""
    return RunRecord.from_tags(tags, params or load_params(), metrics)


def test_a_card_from_a_complete_run_validates_and_renders():
    card = build_card("m", "3", record(RECORDED, TAGS))
    assert card_problems(card) == []
    text = render_markdown(card)
    for section in (
        "Research use only",
        "## Out of scope",
        "Known confounders",
        "## Reference standard",
        "## Decision threshold",
        "## Input gate",
        "| ppv |",
        "refused 98% of 50",
    ):
        assert section in text  # fmt: skip
    assert "Lateral" in text and "Children" in text and "'FOR PROCESSING'" in text
    json.loads(SCHEMA_PATH.read_text())


def test_the_architecture_is_the_network_the_run_trained():
    cpu = build_card("m", "3", record(RECORDED, TAGS))["model"]["architecture"]
    assert cpu.startswith(
        "VGG16 without its top + per-channel mean and standard deviation (log1p) of blocks 3, 4, 5, "
        "over the whole map and each zone of a 3 x 2 grid, feature standardisation, Dense 1 sigmoid"
    )
    paper = record(RECORDED, TAGS, load_params(profile="paper"))
    architecture = build_card("m", "3", paper)["model"]["architecture"]
    assert architecture.startswith("VGG16 without its top + Flatten, Dense 1024 ReLU, Dense 512 ReLU, Dense 1 sigmoid")


def test_missing_clinical_fields_are_named():
    card = build_card("m", "3", record({k: v for k, v in RECORDED.items() if not k.startswith("ood")}, {}))
    problems = " | ".join(card_problems(card))
    assert "input_gate.method" in problems and "input_gate.ood_reject_rate" in problems
    assert "decision_threshold.why" in problems
    assert card_problems(None) == ["there is no model card"]


def test_a_class_without_documented_sources_makes_the_card_incomplete():
    metrics = {k.replace("Normal", "Pneumonia"): v for k, v in RECORDED.items()}
    problems = card_problems(build_card("m", "3", record(metrics, TAGS)))
    assert any(p.startswith("training_data.classes.Pneumonia.sources") for p in problems)


def test_research_use_only_cannot_be_switched_off():
    card = build_card("m", "3", record(RECORDED, TAGS))
    card["intended_use"]["research_use_only"] = False
    assert any("research_use_only" in p for p in card_problems(card))


def test_predictive_values_at_a_stated_prevalence():
    ppv, npv = predictive_values(0.9, 0.8, 0.1)
    assert abs(ppv - 0.09 / (0.09 + 0.18)) < 1e-9 and abs(npv - 0.72 / (0.72 + 0.01)) < 1e-9
    assert predictive_values(1.0, 1.0, 0.5) == (1.0, 1.0)


def test_a_cross_validated_run_says_where_its_validation_figures_come_from_and_how_it_was_calibrated():
    recorded = RECORDED | {
        **{f"cv_{m}_{s}": v for m in ("f1", "accuracy", "sensitivity", "specificity")
           for s, v in (("mean", 0.8), ("std", 0.1))},
        "cv_folds": 5,
        "temperature": 1.7,
        "ece_before_calibration": 0.21,
        "ece_after_calibration": 0.06,
    }  # fmt: skip
    tags = TAGS | {
        "validation": "5-fold out-of-fold predictions on the 32 train + val images",
        "temperature_method": "1.700: minimises cross-entropy on 32 held-out images (grid 0.05-20)",
    }
    card = build_card("m", "3", record(recorded, tags))
    assert card_problems(card) == []
    assert card["metrics"]["cross_validation"]["f1_mean"] == 0.8 and card["metrics"]["cross_validation"]["folds"] == 5
    text = render_markdown(card)
    assert "Validation figures: 5-fold out-of-fold predictions on the 32 train + val images" in text
    assert "5-fold cross-validation over train + val" in text and "f1 0.800 ± 0.100" in text
    assert "temperature 1.700" in text and "0.210 before, 0.060 after" in text
    plain = render_markdown(build_card("m", "3", record(RECORDED, TAGS)))
    assert "cross-validation" not in plain and "Validation figures: the validation split" in plain


def test_the_registry_description_fits_the_column_in_bytes_and_starts_with_the_gate():
    # PostgreSQL created with SQL_ASCII counts bytes: "—" is three of VARCHAR(5000)'s characters there
    card = build_card("m", "3", record(RECORDED, TAGS))
    card["promotion_gate"] = {"outcome": "passed", "reason": "validation F1 — " * 40}
    text = version_description(card, "runs:/abc/model_cards/m-v3.md")
    assert len(text.encode()) <= DESCRIPTION_LIMIT
    assert text.startswith("**Promotion gate: PASSED**") and text.endswith("`runs:/abc/model_cards/m-v3.md`.)")
    assert "# Model card" in text
