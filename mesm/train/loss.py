"""The paper's loss: per-class binary cross-entropy on logits, positives up-weighted.

pos_weight = negatives / positives per class, counted on the TRAINING split only (MESM.md
section 3), also for single-label IEMOCAP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def pos_weight_from_labels(
    train_labels: np.ndarray | Tensor, class_names: Sequence[str] | None = None
) -> Tensor:
    """negatives / positives of each class in the training label matrix.

    A class with no positive (weight infinite) or no negative (weight 0: its positives would never
    be learned against anything) cannot be trained; both raise, naming the class, rather than
    silently capping the weight.

    Args:
        train_labels: (N, C) 0/1 labels of the training split.
        class_names: C names, used in error messages.

    Returns:
        (C,) float32 weights.
    """
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.float64)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(
            f"training labels must be a non-empty (N, C) matrix, got {tuple(labels.shape)}"
        )
    names = (
        list(class_names) if class_names is not None else [str(c) for c in range(labels.shape[1])]
    )
    if len(names) != labels.shape[1]:
        raise ValueError(f"{len(names)} class names for {labels.shape[1]} label columns")
    positives = labels.sum(dim=0)
    negatives = labels.shape[0] - positives
    no_positive = [names[c] for c in range(len(names)) if positives[c] == 0]
    if no_positive:
        raise ValueError(
            f"class(es) {no_positive} have no positive example in the training split: "
            "pos_weight = negatives/positives is undefined; drop the class or fix the split"
        )
    no_negative = [names[c] for c in range(len(names)) if negatives[c] == 0]
    if no_negative:
        raise ValueError(
            f"class(es) {no_negative} are positive in every training example: nothing to "
            "discriminate; drop the class or fix the split"
        )
    return (negatives / positives).to(torch.float32)


def weighted_bce_loss(pos_weight: Tensor) -> nn.BCEWithLogitsLoss:
    """Mean BCE-with-logits over all (sample, class) pairs with per-class ``pos_weight`` (C,).

    The weight is a registered buffer of the returned module, so it follows ``.to(device)``.
    """
    if pos_weight.ndim != 1:
        raise ValueError(f"pos_weight must be (C,), got {tuple(pos_weight.shape)}")
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight.detach().clone().to(torch.float32))


__all__ = ["pos_weight_from_labels", "weighted_bce_loss"]
