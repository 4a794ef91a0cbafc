"""Late fusion: one linear head per modality and a learned weighted sum of their logits.

Letters: B batch, C classes, d feature size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class WeightedLogitFusion(nn.Module):
    """logits = sum_m alpha_m * head_m(feature_m): one scalar weight per modality, no bias."""

    def __init__(self, feature_dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        if not feature_dims:
            raise ValueError("fusion needs at least one modality")
        self.modalities = tuple(feature_dims)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(dim, num_classes) for name, dim in feature_dims.items()}
        )
        # Equal weights at the start: fusion begins as the average of the heads.
        self.modality_weights = nn.Parameter(
            torch.full((len(self.modalities),), 1.0 / len(self.modalities))
        )

    def forward(self, features: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Fuse.

        Args:
            features: modality -> (B, d_m) feature; every modality of the fusion must be present.

        Returns:
            fused (B, C) logits and modality -> (B, C) logits.
        """
        modality_logits = {name: self.heads[name](features[name]) for name in self.modalities}
        stacked = torch.stack([modality_logits[name] for name in self.modalities])  # (M, B, C)
        fused = torch.einsum("m,mbc->bc", self.modality_weights, stacked)
        return fused, modality_logits


__all__ = ["WeightedLogitFusion"]
