"""Classification metrics computed from saved probabilities, with honest baselines.

Everything here is numpy in, plain dicts out (JSON-ready: NaN becomes ``None``), so a run folder's
``predictions.csv`` is enough to recompute every number. Letters: N samples, C classes, G grid
thresholds.

Thresholds are chosen per class on VALIDATION only (:func:`choose_thresholds` receives nothing
else) and applied unchanged to test (:func:`compute_metrics` takes them as given, never tunes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# The paper's decision-threshold grid: 0.05, 0.10, ..., 0.95 (MESM.md section 3).
THRESHOLD_GRID: np.ndarray = np.round(np.arange(1, 20) * 0.05, 2)

# Which per-class metrics lead a printed table, as reported in the paper for each dataset.
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "iemocap": ("f1", "accuracy"),
    "mosei": ("weighted_accuracy", "f1"),
}
# The demo data is generated in the raw IEMOCAP layout and is single-label like IEMOCAP.
_DATASET_KIND_ALIASES: dict[str, str] = {"demo": "iemocap"}

PER_CLASS_METRICS: tuple[str, ...] = (
    "accuracy",
    "weighted_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
)


def primary_metrics(dataset_kind: str) -> tuple[str, ...]:
    """Per-class metrics a ``dataset_kind`` table leads with (IEMOCAP: F1; MOSEI: WAcc, F1)."""
    kind = _DATASET_KIND_ALIASES.get(dataset_kind, dataset_kind)
    if kind not in PRIMARY_METRICS:
        known = sorted({*PRIMARY_METRICS, *_DATASET_KIND_ALIASES})
        raise ValueError(f"unknown dataset kind {dataset_kind!r}; expected one of {known}")
    return PRIMARY_METRICS[kind]


def _check_inputs(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape != labels.shape:
        raise ValueError(
            f"probabilities {probabilities.shape} and labels {labels.shape} must both be (N, C)"
        )
    if probabilities.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 multi-hot")
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities contain NaN or infinity")
    return probabilities, labels.astype(bool)


def confusion_counts(predictions: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class true/false positive/negative counts.

    Args:
        predictions: (..., N, C) bool decisions.
        labels: (N, C) bool targets.

    Returns:
        ``tp``, ``fp``, ``tn``, ``fn``: (..., C) int64 counts.
    """
    labels = labels.astype(bool)
    predictions = predictions.astype(bool)
    return {
        "tp": (predictions & labels).sum(axis=-2),
        "fp": (predictions & ~labels).sum(axis=-2),
        "tn": (~predictions & ~labels).sum(axis=-2),
        "fn": (~predictions & labels).sum(axis=-2),
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # 2TP / (2TP + FP + FN): integer arithmetic up to one division, so equal counts tie exactly.
    return _safe_divide(2 * tp, 2 * tp + fp + fn)


def apply_thresholds(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decisions: class c is predicted present when its probability is >= thresholds[c].

    Args:
        probabilities: (N, C).
        thresholds: (C,).

    Returns:
        (N, C) bool.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (np.shape(probabilities)[-1],):
        raise ValueError(
            f"need one threshold per class: {thresholds.shape} for {np.shape(probabilities)[-1]}"
        )
    return np.asarray(probabilities) >= thresholds


def choose_thresholds(
    val_probabilities: np.ndarray,
    val_labels: np.ndarray,
    grid: Sequence[float] | np.ndarray = THRESHOLD_GRID,
) -> np.ndarray:
    """Per-class thresholds that maximise VALIDATION binary F1.

    Takes only validation data, so test labels cannot influence the result. Ties are broken
    deterministically: among thresholds with the highest F1, the one with the highest accuracy,
    then the smallest threshold. The accuracy step matters for a class with no validation
    positive, where every threshold has F1 0: it then picks the threshold that predicts fewest
    false positives instead of the grid's lowest value.

    Args:
        val_probabilities: (N, C) validation probabilities.
        val_labels: (N, C) validation 0/1 labels.
        grid: candidate thresholds (G,).

    Returns:
        (C,) thresholds, each a member of ``grid``.
    """
    probabilities, labels = _check_inputs(val_probabilities, val_labels)
    grid_array = np.asarray(grid, dtype=np.float64)
    if grid_array.ndim != 1 or grid_array.size == 0:
        raise ValueError("the threshold grid must be a non-empty 1-D sequence")
    grid_array = np.sort(grid_array)
    # (G, 1, 1) vs (N, C) -> (G, N, C): every candidate threshold at once.
    decisions = probabilities[None, :, :] >= grid_array[:, None, None]
    counts = confusion_counts(decisions, labels)  # each (G, C)
    f1 = _f1_from_counts(counts["tp"], counts["fp"], counts["fn"])
    correct = counts["tp"] + counts["tn"]
    # Lexicographic (F1, correct, -threshold) maximum: np.lexsort sorts by the last key first.
    thresholds = np.empty(probabilities.shape[1])
    grid_index = np.arange(grid_array.size)
    for column in range(probabilities.shape[1]):  # C is small (6); the work inside is vectorised
        order = np.lexsort((grid_index, -correct[:, column], -f1[:, column]))
        thresholds[column] = grid_array[order[0]]
    return thresholds


def roc_auc_per_class(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC per class from ranks (Mann-Whitney U, ties counted one half).

    ROC-AUC is undefined for a class whose labels are all 0 or all 1 in this split; it is
    reported as NaN there (``None`` in JSON) and averages skip it.

    Args:
        probabilities: (N, C).
        labels: (N, C) 0/1.

    Returns:
        (C,) AUC, NaN where undefined.
    """
    probabilities, labels = _check_inputs(probabilities, labels)
    num_samples = probabilities.shape[0]
    # Average ranks with ties: rank of each value = mean of the ranks its equal values occupy.
    order = np.argsort(probabilities, axis=0, kind="stable")
    sorted_values = np.take_along_axis(probabilities, order, axis=0)
    ranks = np.empty_like(probabilities)
    for column in range(probabilities.shape[1]):
        _, first, counts = np.unique(
            sorted_values[:, column], return_index=True, return_counts=True
        )
        # Tied block [first, first+count) gets the mean 1-based rank first + (count + 1) / 2.
        block_rank = first + (counts + 1) / 2.0
        ranks[order[:, column], column] = np.repeat(block_rank, counts)
    positives = labels.sum(axis=0)
    negatives = num_samples - positives
    rank_sum = (ranks * labels).sum(axis=0)
    u_statistic = rank_sum - positives * (positives + 1) / 2.0
    defined = (positives > 0) & (negatives > 0)
    auc = np.full(probabilities.shape[1], np.nan)
    auc[defined] = u_statistic[defined] / (positives[defined] * negatives[defined])
    return auc


def is_single_label(labels: np.ndarray) -> bool:
    """True when every row has exactly one positive (IEMOCAP's kept classes)."""
    labels = np.asarray(labels)
    return bool(labels.ndim == 2 and labels.shape[0] > 0 and (labels.sum(axis=1) == 1).all())


def _rates_from_counts(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    total = tp + fp + tn + fn
    recall = _safe_divide(tp, tp + fn)
    specificity = _safe_divide(tn, tn + fp)
    return {
        "accuracy": _safe_divide(tp + tn, total),
        # (TPR + TNR) / 2 = (TP * N / P + TN) / (2N), the paper's weighted accuracy.
        "weighted_accuracy": (recall + specificity) / 2.0,
        "precision": _safe_divide(tp, tp + fp),
        "recall": recall,
        "f1": _f1_from_counts(tp, fp, fn),
    }


def _jsonable(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def all_negative_baseline(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicting "absent" for every class: accuracy = negative rate, WAcc 0.5, F1 0."""
    _, bool_labels = _check_inputs(np.zeros(np.shape(labels)), labels)
    decisions = np.zeros_like(bool_labels)
    rates = _rates_from_counts(confusion_counts(decisions, bool_labels))
    per_class = {
        name: {key: float(rates[key][c]) for key in ("accuracy", "weighted_accuracy", "f1")}
        for c, name in enumerate(class_names)
    }
    average = {key: float(rates[key].mean()) for key in ("accuracy", "weighted_accuracy", "f1")}
    return {
        "description": "predict every class absent",
        "per_class": per_class,
        "average": average,
    }


def chance_baseline(
    labels: np.ndarray, class_names: Sequence[str], prior: np.ndarray
) -> dict[str, Any]:
    """Analytic expectation of guessing each class present at random with probability ``prior``.

    With q = prior[c] (the class's TRAINING frequency), P positives, M negatives, T = P + M in the
    evaluated split: E[TP] = qP, E[FP] = qM, E[TN] = (1-q)M, E[FN] = (1-q)P. Accuracy and weighted
    accuracy (always 0.5) are exact expectations; precision is P/T, recall q, and F1 is the ratio of
    expected counts 2qP / (qT + P) (the usual analytic chance F1, not E[F1]).

    Args:
        labels: (N, C) 0/1 labels of the evaluated split.
        class_names: C names.
        prior: (C,) guessing probabilities, normally the training split's class frequencies.
    """
    _, bool_labels = _check_inputs(np.zeros(np.shape(labels)), labels)
    q = np.asarray(prior, dtype=np.float64)
    if q.shape != (bool_labels.shape[1],) or (q < 0).any() or (q > 1).any():
        raise ValueError(f"prior must be (C,) = ({bool_labels.shape[1]},) in [0, 1], got {q}")
    positives = bool_labels.sum(axis=0).astype(np.float64)
    total = float(bool_labels.shape[0])
    negatives = total - positives
    expected = {
        "tp": q * positives,
        "fp": q * negatives,
        "tn": (1 - q) * negatives,
        "fn": (1 - q) * positives,
    }
    rates = _rates_from_counts(expected)
    keys = ("accuracy", "weighted_accuracy", "precision", "recall", "f1")
    return {
        "description": "guess each class present with its training frequency (expected counts)",
        "prior": [float(value) for value in q],
        "per_class": {
            name: {key: float(rates[key][c]) for key in keys} for c, name in enumerate(class_names)
        },
        "average": {key: float(rates[key].mean()) for key in keys},
    }


def compute_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    class_names: Sequence[str],
    train_prior: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of one split at FIXED thresholds (this function never tunes them).

    Args:
        probabilities: (N, C) predicted probabilities.
        labels: (N, C) 0/1 labels.
        thresholds: (C,) decision thresholds (chosen on validation).
        class_names: C names, in column order.
        train_prior: (C,) training-split class frequencies for the chance baseline; without it,
            the evaluated split's own frequencies are used and the baseline says so.

    Returns:
        A JSON-ready dict: ``num_samples``; ``thresholds``; ``per_class`` (name -> accuracy,
        weighted_accuracy, precision, recall, f1, roc_auc, positives, negatives, tp, fp, tn, fn);
        ``average`` (mean of each per-class metric; ROC-AUC over the classes where it is defined);
        ``micro_f1``, ``macro_f1``; ``roc_auc_undefined`` (classes with one label value);
        ``single_label`` (argmax accuracy, balanced accuracy, argmax confusion matrix with rows =
        true class) or None for multi-label data; ``baselines`` (``all_negative``, ``chance``).
    """
    probabilities, bool_labels = _check_inputs(probabilities, labels)
    names = list(class_names)
    if len(names) != probabilities.shape[1]:
        raise ValueError(f"{len(names)} class names for {probabilities.shape[1]} columns")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    decisions = apply_thresholds(probabilities, thresholds)
    counts = confusion_counts(decisions, bool_labels)
    rates = _rates_from_counts(counts)
    rates["roc_auc"] = roc_auc_per_class(probabilities, bool_labels)

    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(names):
        entry: dict[str, Any] = {key: _jsonable(float(rates[key][c])) for key in PER_CLASS_METRICS}
        entry["threshold"] = float(thresholds[c])
        entry["positives"] = int(bool_labels[:, c].sum())
        entry["negatives"] = int((~bool_labels[:, c]).sum())
        entry.update({key: int(counts[key][c]) for key in ("tp", "fp", "tn", "fn")})
        per_class[name] = entry

    average: dict[str, float | None] = {
        key: float(rates[key].mean()) for key in PER_CLASS_METRICS if key != "roc_auc"
    }
    auc_defined = ~np.isnan(rates["roc_auc"])
    average["roc_auc"] = float(rates["roc_auc"][auc_defined].mean()) if auc_defined.any() else None

    pooled = {key: value.sum() for key, value in counts.items()}
    micro_f1 = float(_f1_from_counts(pooled["tp"], pooled["fp"], pooled["fn"]))

    single_label: dict[str, Any] | None = None
    if is_single_label(bool_labels):
        true_class = bool_labels.argmax(axis=1)
        predicted_class = probabilities.argmax(axis=1)
        num_classes = len(names)
        # Row = true class, column = predicted class; bincount on the flat index counts pairs.
        matrix = np.bincount(
            true_class * num_classes + predicted_class, minlength=num_classes**2
        ).reshape(num_classes, num_classes)
        class_recall = _safe_divide(np.diag(matrix), matrix.sum(axis=1))
        present = matrix.sum(axis=1) > 0
        single_label = {
            "argmax_accuracy": float((true_class == predicted_class).mean()),
            # Unweighted average recall over the classes present in this split.
            "balanced_accuracy": float(class_recall[present].mean()),
            "confusion_matrix": matrix.tolist(),
        }

    prior = bool_labels.mean(axis=0) if train_prior is None else np.asarray(train_prior)
    chance = chance_baseline(bool_labels, names, prior)
    if train_prior is None:
        chance["description"] += " (no training prior given: this split's own frequencies)"

    return {
        "num_samples": int(probabilities.shape[0]),
        "class_names": names,
        "thresholds": {name: float(thresholds[c]) for c, name in enumerate(names)},
        "per_class": per_class,
        "average": average,
        "micro_f1": micro_f1,
        "macro_f1": float(rates["f1"].mean()),
        "roc_auc_undefined": [name for c, name in enumerate(names) if not auc_defined[c]],
        "single_label": single_label,
        "baselines": {
            "all_negative": all_negative_baseline(bool_labels, names),
            "chance": chance,
        },
    }


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100.0 * value:5.1f}"


def format_metrics_table(metrics: dict[str, Any], dataset_kind: str, title: str = "") -> str:
    """A plain-text table of one split's metrics, leading with the dataset's primary metrics.

    Rows: one per class, then the average, the all-negative baseline and the chance baseline;
    values in percent. IEMOCAP (and the demo) lead with F1 then accuracy; MOSEI with weighted
    accuracy then F1, as in the paper.
    """
    lead = primary_metrics(dataset_kind)
    columns = [*lead, *(key for key in PER_CLASS_METRICS if key not in lead)]
    short = {
        "accuracy": "Acc",
        "weighted_accuracy": "WAcc",
        "precision": "Prec",
        "recall": "Rec",
        "f1": "F1",
        "roc_auc": "AUC",
    }
    names = list(metrics["class_names"])
    width = max(16, *(len(name) for name in names))
    header = f"{'':<{width}} " + " ".join(f"{short[key]:>5}" for key in columns) + "  thr"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for name in names:
        entry = metrics["per_class"][name]
        values = " ".join(_percent(entry[key]) for key in columns)
        lines.append(f"{name:<{width}} {values} {entry['threshold']:.2f}")
    lines.append(
        f"{'average':<{width}} " + " ".join(_percent(metrics["average"][k]) for k in columns)
    )
    for baseline_name in ("all_negative", "chance"):
        baseline = metrics["baselines"][baseline_name]["average"]
        values = " ".join(_percent(baseline.get(key)) for key in columns)
        lines.append(f"{baseline_name.replace('_', '-') + ' baseline':<{width}} {values}")
    lines.append(
        f"micro F1 {_percent(metrics['micro_f1'])}   macro F1 {_percent(metrics['macro_f1'])}"
    )
    if metrics["single_label"] is not None:
        single = metrics["single_label"]
        lines.append(
            f"argmax accuracy {_percent(single['argmax_accuracy'])}   "
            f"balanced accuracy {_percent(single['balanced_accuracy'])}"
        )
    if metrics["roc_auc_undefined"]:
        lines.append(
            "ROC-AUC undefined (one label value in this split) for: "
            + ", ".join(metrics["roc_auc_undefined"])
        )
    return "\n".join(lines)


__all__ = [
    "PER_CLASS_METRICS",
    "PRIMARY_METRICS",
    "THRESHOLD_GRID",
    "all_negative_baseline",
    "apply_thresholds",
    "chance_baseline",
    "choose_thresholds",
    "compute_metrics",
    "confusion_counts",
    "format_metrics_table",
    "is_single_label",
    "primary_metrics",
    "roc_auc_per_class",
]
