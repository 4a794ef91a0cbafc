"""Test labels cannot change the thresholds: they are chosen from validation data only."""

from __future__ import annotations

import inspect

import numpy as np

from mesm.train import metrics as metrics_module
from mesm.train.metrics import choose_thresholds, compute_metrics


def _split(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((size, 4)) < 0.3).astype(int)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random((size, 4)), 0, 1)
    return probabilities, labels


def test_choose_thresholds_takes_only_validation_arrays():
    parameters = list(inspect.signature(choose_thresholds).parameters)
    assert parameters == ["val_probabilities", "val_labels", "grid"]
    # compute_metrics applies given thresholds and has no way to tune them.
    assert "thresholds" in inspect.signature(compute_metrics).parameters
    assert "choose_thresholds(" not in inspect.getsource(metrics_module.compute_metrics)


def test_changing_test_labels_changes_test_metrics_but_not_thresholds():
    val_probabilities, val_labels = _split(0, 120)
    test_probabilities, test_labels = _split(1, 120)
    thresholds = choose_thresholds(val_probabilities, val_labels)
    names = ["a", "b", "c", "d"]
    original = compute_metrics(test_probabilities, test_labels, thresholds, names)

    flipped_labels = 1 - test_labels  # the most adversarial change of test labels
    thresholds_again = choose_thresholds(val_probabilities, val_labels)
    flipped = compute_metrics(test_probabilities, flipped_labels, thresholds_again, names)

    np.testing.assert_array_equal(thresholds, thresholds_again)
    assert flipped["thresholds"] == original["thresholds"]
    # The test metrics did react to the labels, so the check above is not vacuous.
    assert flipped["average"]["f1"] != original["average"]["f1"]


def test_thresholds_tuned_on_test_would_differ():
    # Sanity of the setup: tuning on test (what the public code did) would give other thresholds,
    # so equality above is due to validation-only tuning, not to a flat objective.
    val_probabilities, val_labels = _split(0, 120)
    test_probabilities, test_labels = _split(1, 120)
    assert not np.array_equal(
        choose_thresholds(val_probabilities, val_labels),
        choose_thresholds(test_probabilities, 1 - test_labels),
    )
