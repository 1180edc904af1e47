"""Cross-validation folds: stratified, near-duplicates kept together, reproducible; the fold summary."""

import numpy as np
import pandas as pd
import pytest

from cxr.errors import CxrError
from cxr.evaluation.cross_validation import assign_folds, summarise


def manifest(n_per_class: int, duplicates: int = 0, seed: int = 0) -> pd.DataFrame:
    """Rows with random 256-bit dHashes; the first `duplicates` COVID rows get a near copy (2 bits off)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("COVID", "Normal"):
        for i in range(n_per_class):
            h = int.from_bytes(rng.bytes(32), "big")
            rows.append(
                {"label": label, "dhash256": f"{h:064x}", "sha256": f"{label}{i:04d}", "source": f"{label}/{i}"}
            )
            if label == "COVID" and i < duplicates:
                rows.append(
                    {
                        "label": label,
                        "dhash256": f"{h ^ 0b101:064x}",
                        "sha256": f"dup{i:04d}",
                        "source": f"{label}/{i}b",
                    }
                )
    return pd.DataFrame(rows)


def test_every_fold_holds_both_classes_in_near_equal_numbers():
    frame = manifest(16)
    folds = assign_folds(frame, 5, seed=1)
    assert set(folds) == set(range(5))
    for fold in range(5):
        counts = frame[folds == fold]["label"].value_counts()
        assert set(counts.index) == {"COVID", "Normal"}
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1


def test_near_duplicates_share_a_fold_so_none_is_scored_by_a_model_that_saw_its_copy():
    frame = manifest(12, duplicates=6)
    for seed in range(5):
        folds = assign_folds(frame, 4, seed=seed)
        by_source = dict(zip(frame["source"], folds, strict=True))
        for i in range(6):
            assert by_source[f"COVID/{i}"] == by_source[f"COVID/{i}b"]


def test_folds_are_reproducible_from_the_seed_and_change_with_it():
    frame = manifest(10)
    assert (assign_folds(frame, 5, seed=3) == assign_folds(frame, 5, seed=3)).all()
    assert (assign_folds(frame.iloc[::-1].reset_index(drop=True), 5, 3)[::-1] == assign_folds(frame, 5, 3)).all()
    assert not (assign_folds(frame, 5, seed=3) == assign_folds(frame, 5, seed=4)).all()


def test_too_few_folds_or_too_few_images_is_one_sentence():
    with pytest.raises(CxrError, match="at least 2 folds"):
        assign_folds(manifest(4), 1, seed=0)
    with pytest.raises(CxrError, match="fewer than evaluate.cv_folds 5"):
        assign_folds(manifest(3), 5, seed=0)


def test_summary_is_mean_and_sample_std_over_folds():
    folds = [{"f1": 0.8, "accuracy": 0.75}, {"f1": 0.6, "accuracy": 0.75}, {"f1": float("nan"), "accuracy": 1.0}]
    s = summarise(folds)
    assert s["cv_f1_mean"] == pytest.approx(0.7)
    assert s["cv_f1_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert s["cv_accuracy_mean"] == pytest.approx(2.5 / 3)
    assert s["cv_folds"] == 3
    assert "cv_sensitivity_mean" not in s


def test_a_loss_spike_is_a_jump_above_what_guessing_costs_not_a_wobble_near_zero():
    from cxr.model.fitting import largest_loss_jump

    assert largest_loss_jump([0.69, 0.5, 11.0, 0.6]) == pytest.approx(22.0)  # the spike to ~11
    assert largest_loss_jump([0.69, 0.3, 0.05, 0.12, 0.04]) == 1.0  # small losses wobbling: no spike
    assert largest_loss_jump([0.69]) == 1.0 and largest_loss_jump([]) == 1.0
