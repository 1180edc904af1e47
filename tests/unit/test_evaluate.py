import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from cxr.evaluation.metrics import compute_metrics, confusion_matrix_table


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.25, 200), 0.001, 0.999)
    m = compute_metrics(y, p, 0.5)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["bce"] == pytest.approx(log_loss(y, p))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))


def test_the_papers_confusion_matrix_gives_the_papers_f1():
    # Wali (2021): [[542, 79], [25, 1731]], rows true COVID/Normal, COVID positive -> F1 0.9125, acc 0.956
    y = np.array([1] * (542 + 79) + [0] * (25 + 1731))
    p = np.array([1.0] * 542 + [0.0] * 79 + [1.0] * 25 + [0.0] * 1731)
    m = compute_metrics(y, p)
    assert m["f1"] == pytest.approx(0.9125, abs=5e-4)
    assert m["accuracy"] == pytest.approx(0.956, abs=5e-4)
    assert confusion_matrix_table(m, "Normal", "COVID")["matrix"] == [[542, 79], [25, 1731]]


def test_one_class_only_gives_nan_auc_not_a_crash():
    m = compute_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert np.isnan(m["roc_auc"]) and m["recall"] == pytest.approx(2 / 3)


def test_threshold_max_f1_separates_a_separable_set():
    from cxr.evaluation.thresholds import choose_threshold

    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    t = choose_threshold(y, p, "max_f1")
    assert compute_metrics(y, p, t)["f1"] == 1.0 and 0.3 < t <= 0.35


def test_threshold_for_target_sensitivity_is_the_highest_reaching_it():
    from cxr.evaluation.thresholds import choose_threshold

    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.2, 0.5, 0.1])
    t = choose_threshold(y, p, "target_sensitivity", target_sensitivity=0.75)
    assert t == pytest.approx(0.3) and compute_metrics(y, p, t)["recall"] >= 0.75
    assert choose_threshold(y, p, "fixed", fixed=0.3) == 0.3


def test_bootstrap_interval_contains_the_point_estimate_and_narrows_with_n():
    from cxr.evaluation.metrics import bootstrap_ci

    rng = np.random.default_rng(1)
    small_y = rng.integers(0, 2, 20)
    small_p = np.clip(small_y * 0.5 + rng.normal(0.25, 0.2, 20), 0, 1)
    big_y = np.tile(small_y, 20)
    big_p = np.tile(small_p, 20)
    small = bootstrap_ci(small_y, small_p, 0.5, samples=300)
    big = bootstrap_ci(big_y, big_p, 0.5, samples=300)
    point = compute_metrics(small_y, small_p, 0.5)
    for name in ("f1", "accuracy", "sensitivity", "specificity"):
        assert small[name][0] <= point[name] <= small[name][1]
        assert big[name][1] - big[name][0] <= small[name][1] - small[name][0]
    assert big["f1"][1] - big["f1"][0] < small["f1"][1] - small["f1"][0]


def test_calibration_error_is_zero_for_calibrated_bins_and_large_for_overconfident():
    from cxr.evaluation.metrics import calibration

    y = np.array([1] * 7 + [0] * 3 + [1] * 2 + [0] * 8)
    p = np.array([0.7] * 10 + [0.2] * 10)
    assert calibration(y, p)["ece"] == pytest.approx(0.0, abs=1e-9)
    assert calibration(np.array([0, 1] * 10), np.array([0.99] * 20))["ece"] == pytest.approx(0.49)
