"""The batch contract between the data pipeline and every model.

A model's ``forward`` takes a mapping keyed by modality name (``"text"``, ``"audio"``,
``"vision"``); each value is one of the two input types below. Tensors are already batched,
padded and (for faces) normalised: nothing in a model decodes media or tokenises text.

Letters: B batch, S frames or chunks, C channels, H, W, L tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")


@dataclass
class TokenInput:
    """Tokenised text.

    Attributes:
        input_ids: (B, L) token ids.
        attention_mask: (B, L) 1 at real tokens, 0 at padding.
    """

    input_ids: Tensor
    attention_mask: Tensor

    def to(self, device: torch.device | str) -> TokenInput:
        return TokenInput(self.input_ids.to(device), self.attention_mask.to(device))


@dataclass
class SequenceInput:
    """A padded sequence of 2-D maps: face frames (C=3, 48x48) or mel chunks (C=1, 128x32).

    Attributes:
        values: (B, S, C, H, W) float maps; padded steps are zero.
        mask: (B, S) bool, True at real steps. Every item has at least one real step.
    """

    values: Tensor
    mask: Tensor

    @property
    def lengths(self) -> Tensor:
        """(B,) number of real steps per item."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str) -> SequenceInput:
        return SequenceInput(self.values.to(device), self.mask.to(device))


ModalityInput = TokenInput | SequenceInput


@dataclass
class Batch:
    """One collated batch.

    Attributes:
        ids: utterance ids, length B.
        inputs: modality name -> input, only the modalities the batch was built with.
        labels: (B, num_classes) float multi-hot targets.
        texts: the raw sentences, length B (kept for logging and figures).
    """

    ids: list[str]
    inputs: dict[str, ModalityInput]
    labels: Tensor
    texts: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            ids=self.ids,
            inputs={name: value.to(device) for name, value in self.inputs.items()},
            labels=self.labels.to(device),
            texts=self.texts,
        )

    def __len__(self) -> int:
        return len(self.ids)


def select_modalities(
    inputs: Mapping[str, ModalityInput], names: tuple[str, ...]
) -> dict[str, ModalityInput]:
    """Keep only ``names`` from ``inputs``; a missing name is an error that names it."""
    missing = [name for name in names if name not in inputs]
    if missing:
        raise KeyError(f"batch has no input for modality {missing}; it has {sorted(inputs)}")
    return {name: inputs[name] for name in names}


__all__ = [
    "MODALITIES",
    "Batch",
    "ModalityInput",
    "SequenceInput",
    "TokenInput",
    "select_modalities",
]
