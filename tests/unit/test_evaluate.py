import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from cxr.evaluate import compute_metrics, confusion_matrix_table


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
