"""Metrics against hand-computed cases and scikit-learn, baselines, tables, threshold choice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mesm.train.metrics import (
    THRESHOLD_GRID,
    apply_thresholds,
    chance_baseline,
    choose_thresholds,
    compute_metrics,
    format_metrics_table,
    is_single_label,
    primary_metrics,
    roc_auc_per_class,
)

NAMES = ["a", "b"]


def test_threshold_grid_is_the_papers():
    assert THRESHOLD_GRID.tolist() == [round(0.05 * k, 2) for k in range(1, 20)]


def test_hand_computed_binary_case():
    # Class a at threshold 0.5: TP=2 (0.9, 0.6), FP=1 (0.7), TN=2 (0.1, 0.2), FN=1 (0.4).
    probabilities = np.array(
        [[0.9, 0.5], [0.6, 0.5], [0.7, 0.5], [0.1, 0.5], [0.2, 0.5], [0.4, 0.5]]
    )
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 1], [0, 0], [1, 0]])
    metrics = compute_metrics(probabilities, labels, np.array([0.5, 0.95]), NAMES)
    a = metrics["per_class"]["a"]
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (2, 1, 2, 1)
    assert a["accuracy"] == pytest.approx(4 / 6)
    assert a["precision"] == pytest.approx(2 / 3)
    assert a["recall"] == pytest.approx(2 / 3)
    assert a["f1"] == pytest.approx(2 / 3)
    assert a["weighted_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # AUC of a: positives {0.9, 0.6, 0.4}, negatives {0.7, 0.1, 0.2}: 7 of 9 pairs ordered.
    assert a["roc_auc"] == pytest.approx(7 / 9)
    b = metrics["per_class"]["b"]
    # b predicts nothing at 0.95: precision/F1 follow zero_division=0, WAcc = (0 + 1) / 2.
    assert (b["precision"], b["recall"], b["f1"], b["weighted_accuracy"]) == (0.0, 0.0, 0.0, 0.5)
    assert b["roc_auc"] == pytest.approx(0.5)  # all tied
    assert metrics["single_label"] is None  # rows with 0 positives: multi-label data
    assert metrics["average"]["f1"] == pytest.approx((2 / 3 + 0) / 2)
    # micro F1 pools counts: TP 2, FP 1, FN 1 + 1.
    assert metrics["micro_f1"] == pytest.approx(4 / (4 + 1 + 2))


def test_against_scikit_learn_multilabel():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < [0.1, 0.3, 0.5, 0.2]).astype(int)
    probabilities = np.clip(labels * 0.3 + rng.random((200, 4)) * 0.7, 0, 1).round(2)
    thresholds = np.array([0.3, 0.45, 0.5, 0.65])
    names = ["w", "x", "y", "z"]
    metrics = compute_metrics(probabilities, labels, thresholds, names)
    predictions = apply_thresholds(probabilities, thresholds).astype(int)
    for c, name in enumerate(names):
        entry = metrics["per_class"][name]
        y, p = labels[:, c], predictions[:, c]
        assert entry["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert entry["precision"] == pytest.approx(precision_score(y, p, zero_division=0))
        assert entry["recall"] == pytest.approx(recall_score(y, p))
        assert entry["f1"] == pytest.approx(f1_score(y, p))
        assert entry["weighted_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities[:, c]))
    assert metrics["micro_f1"] == pytest.approx(f1_score(labels, predictions, average="micro"))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert metrics["average"]["roc_auc"] == pytest.approx(
        roc_auc_score(labels, probabilities, average="macro")
    )


def test_single_label_argmax_metrics_against_scikit_learn():
    rng = np.random.default_rng(1)
    true_class = rng.integers(0, 3, size=90)
    labels = np.eye(3, dtype=int)[true_class]
    probabilities = rng.random((90, 3)) + 0.5 * labels
    metrics = compute_metrics(probabilities, labels, np.full(3, 0.5), ["p", "q", "r"])
    predicted = probabilities.argmax(axis=1)
    single = metrics["single_label"]
    assert is_single_label(labels)
    assert single["argmax_accuracy"] == pytest.approx(accuracy_score(true_class, predicted))
    assert single["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(true_class, predicted)
    )
    assert single["confusion_matrix"] == confusion_matrix(true_class, predicted).tolist()


def test_roc_auc_undefined_when_one_label_value_is_reported_none():
    probabilities = np.array([[0.2, 0.9], [0.8, 0.1], [0.4, 0.7]])
    labels = np.array([[0, 1], [1, 1], [0, 1]])  # class b is positive everywhere
    auc = roc_auc_per_class(probabilities, labels)
    assert auc[0] == pytest.approx(1.0) and math.isnan(auc[1])
    metrics = compute_metrics(probabilities, labels, np.array([0.5, 0.5]), NAMES)
    assert metrics["per_class"]["b"]["roc_auc"] is None
    assert metrics["roc_auc_undefined"] == ["b"]
    assert metrics["average"]["roc_auc"] == pytest.approx(1.0)  # over defined classes only
    json.dumps(metrics, allow_nan=False)  # JSON-ready: no NaN anywhere
    assert "ROC-AUC undefined" in format_metrics_table(metrics, "iemocap")


def test_baselines():
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 0]])
    metrics = compute_metrics(
        np.zeros((4, 2)) + 0.3,
        labels,
        np.array([0.5, 0.5]),
        NAMES,
        train_prior=np.array([0.5, 0.25]),
    )
    negative = metrics["baselines"]["all_negative"]
    assert negative["per_class"]["a"] == {"accuracy": 0.75, "weighted_accuracy": 0.5, "f1": 0.0}
    assert negative["average"]["accuracy"] == pytest.approx(0.75)
    chance = metrics["baselines"]["chance"]
    # q = 0.5, P = 1, T = 4: accuracy = qP/T + (1-q)(T-P)/T = 0.5; F1 = 2qP / (qT + P) = 1/3.
    assert chance["per_class"]["a"]["accuracy"] == pytest.approx(0.5)
    assert chance["per_class"]["a"]["f1"] == pytest.approx(1 / 3)
    assert chance["per_class"]["a"]["weighted_accuracy"] == pytest.approx(0.5)
    # q = 0.25 for b: F1 = 0.5 / (1 + 1) = 0.25.
    assert chance["per_class"]["b"]["f1"] == pytest.approx(0.25)


def test_chance_f1_matches_simulation():
    rng = np.random.default_rng(2)
    labels = (rng.random((400, 1)) < 0.3).astype(int)
    analytic = chance_baseline(labels, ["a"], np.array([0.3]))["per_class"]["a"]
    draws = rng.random((2000, 400)) < 0.3  # 2000 random guessers
    tp = (draws & labels[:, 0].astype(bool)).sum(1)
    fp = (draws & ~labels[:, 0].astype(bool)).sum(1)
    fn = labels.sum() - tp
    # Ratio of expectations vs mean of ratios: close for N = 400.
    assert analytic["f1"] == pytest.approx(np.mean(2 * tp / (2 * tp + fp + fn)), abs=0.01)
    assert analytic["accuracy"] == pytest.approx(
        np.mean((tp + 400 - labels.sum() - fp) / 400), abs=0.01
    )


def test_choose_thresholds_maximises_validation_f1_with_deterministic_ties():
    # Class a: positives at 0.8, 0.6; negatives at 0.3, 0.55. Thresholds in (0.55, 0.6] give F1 1:
    # only 0.60 on the grid. Class b: no positive; every threshold has F1 0 -> fewest false
    # positives (highest accuracy): 0.95 is the smallest threshold above every probability (0.9).
    probabilities = np.array([[0.8, 0.1], [0.6, 0.9], [0.3, 0.2], [0.55, 0.3]])
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    thresholds = choose_thresholds(probabilities, labels)
    assert thresholds.tolist() == [0.6, 0.95]
    # A perfectly separable class ties over a range: the smallest maximising threshold wins.
    tie = choose_thresholds(np.array([[0.9], [0.1]]), np.array([[1], [0]]))
    assert tie.tolist() == [0.15]


def test_choose_thresholds_matches_brute_force_sklearn():
    rng = np.random.default_rng(3)
    labels = (rng.random((150, 3)) < 0.3).astype(int)
    probabilities = np.clip(0.35 * labels + 0.65 * rng.random((150, 3)), 0, 1)
    thresholds = choose_thresholds(probabilities, labels)
    for c in range(3):
        scores = [f1_score(labels[:, c], probabilities[:, c] >= t) for t in THRESHOLD_GRID]
        assert f1_score(labels[:, c], probabilities[:, c] >= thresholds[c]) == pytest.approx(
            max(scores)
        )


def test_primary_metrics_and_table_order():
    assert primary_metrics("iemocap") == ("f1", "accuracy")
    assert primary_metrics("demo") == ("f1", "accuracy")
    assert primary_metrics("mosei") == ("weighted_accuracy", "f1")
    with pytest.raises(ValueError, match="unknown dataset kind 'meld'"):
        primary_metrics("meld")
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    metrics = compute_metrics(
        np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.3], [0.1, 0.7]]),
        labels,
        np.array([0.5, 0.5]),
        NAMES,
    )
    iemocap_header = format_metrics_table(metrics, "iemocap").splitlines()[0].split()
    mosei_header = format_metrics_table(metrics, "mosei").splitlines()[0].split()
    assert iemocap_header[:2] == ["F1", "Acc"]
    assert mosei_header[:2] == ["WAcc", "F1"]
    assert "all-negative baseline" in format_metrics_table(metrics, "mosei")


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics(np.zeros((3, 2)), np.zeros((3, 3)), np.full(2, 0.5), NAMES)
    with pytest.raises(ValueError, match="0/1"):
        choose_thresholds(np.zeros((2, 1)), np.array([[2], [0]]))
    with pytest.raises(ValueError, match="one threshold per class"):
        apply_thresholds(np.zeros((2, 2)), np.array([0.5]))
