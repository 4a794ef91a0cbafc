"""pos_weight from training labels and the weighted BCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mesm.train.loss import pos_weight_from_labels, weighted_bce_loss


def test_pos_weight_is_negatives_over_positives():
    labels = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]])
    weight = pos_weight_from_labels(labels, ["a", "b", "c"])
    torch.testing.assert_close(weight, torch.tensor([3.0, 3.0, 1 / 3]))


def test_classes_without_positives_or_negatives_are_named():
    labels = np.array([[1, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"\['b'\] have no positive"):
        pos_weight_from_labels(labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\['c'\] are positive in every"):
        pos_weight_from_labels(np.array([[1, 0, 1], [0, 1, 1]]), ["a", "b", "c"])


def test_weighted_bce_matches_hand_formula():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.tensor([2.0, 3.0])
    loss = weighted_bce_loss(weight)(logits, targets)
    sigmoid = torch.sigmoid(logits)
    by_hand = -(weight * targets * sigmoid.log() + (1 - targets) * (1 - sigmoid).log()).mean()
    torch.testing.assert_close(loss, by_hand)
    assert "pos_weight" in dict(weighted_bce_loss(weight).named_buffers())
