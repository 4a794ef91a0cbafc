"""Turn dataset items into one padded :class:`~mesm.data.batch.Batch`.

Items come from :class:`mesm.data.dataset.ProcessedDataset`: dicts with ``id``, ``faces`` uint8
(S, 3, 48, 48), ``audio`` float (K, 1, 128, 32), ``text`` and ``labels`` float (C,). The collator
pads each sequence modality into one preallocated (B, S_max, C, H, W) tensor (one copy per item, no
repeated concatenation), builds the (B, S_max) masks, normalises faces and tokenises the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from mesm.data.batch import MODALITIES, Batch, ModalityInput, SequenceInput, TokenInput
from mesm.media.faces import FACE_MEAN, FACE_STD

# Dataset item key of each sequence modality.
_SEQUENCE_KEYS: dict[str, str] = {"audio": "audio", "vision": "faces"}

Tokenizer = Callable[..., Any]


def pad_sequences(sequences: Sequence[Tensor]) -> SequenceInput:
    """Pad variable-length sequences of maps into one tensor and a mask.

    Args:
        sequences: B tensors of shape (S_b, C, H, W) with S_b >= 1 and the same (C, H, W).

    Returns:
        values (B, S_max, C, H, W) float32, zero at padding; mask (B, S_max) True at real steps.
    """
    if not sequences:
        raise ValueError("cannot pad an empty list of sequences")
    lengths = [int(seq.shape[0]) for seq in sequences]
    if min(lengths) < 1:
        raise ValueError("every item needs at least one frame or chunk; got an empty sequence")
    shape = tuple(sequences[0].shape[1:])
    values = torch.zeros((len(sequences), max(lengths), *shape), dtype=torch.float32)
    mask = torch.zeros((len(sequences), max(lengths)), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if tuple(seq.shape[1:]) != shape:
            raise ValueError(
                f"item {row} has maps of shape {tuple(seq.shape[1:])}, expected {shape}"
            )
        values[row, : seq.shape[0]] = seq
        mask[row, : seq.shape[0]] = True
    return SequenceInput(values=values, mask=mask)


def normalize_faces(values: Tensor) -> Tensor:
    """Map 0-255 face pixels to the model's scale.

    Args:
        values: (..., 3, H, W) uint8 or float on the 0-255 scale.

    Returns:
        Float tensor of the same shape, (x - FACE_MEAN) / FACE_STD per channel.
    """
    mean = torch.tensor(FACE_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(FACE_STD, dtype=torch.float32).view(3, 1, 1)
    return (values.float() - mean) / std


class Collator:
    """Callable collate function for a DataLoader (picklable, so it works with worker processes).

    Args:
        modalities: which inputs to build, a subset of ``("text", "audio", "vision")``.
        tokenizer: a Hugging Face tokenizer (called as ``tokenizer(texts, padding=..., ...)``);
            required when ``"text"`` is among the modalities.
        text_max_len: maximum number of tokens, [CLS] and [SEP] included.
    """

    def __init__(
        self,
        modalities: Sequence[str] = MODALITIES,
        tokenizer: Tokenizer | None = None,
        text_max_len: int = 50,
    ) -> None:
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or not modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}"
            )
        if "text" in modalities and tokenizer is None:
            raise ValueError("the text modality needs a tokenizer")
        self.modalities = tuple(modalities)
        self.tokenizer = tokenizer
        self.text_max_len = text_max_len

    def __call__(self, items: Sequence[dict[str, Any]]) -> Batch:
        texts = [str(item["text"]) for item in items]
        inputs: dict[str, ModalityInput] = {}
        for name in self.modalities:
            if name == "text":
                inputs[name] = self._tokenize(texts)
            else:
                sequence = pad_sequences([item[_SEQUENCE_KEYS[name]] for item in items])
                if name == "vision":
                    # Padded steps stay exactly zero after normalisation.
                    normalized = normalize_faces(sequence.values)
                    sequence.values = normalized * sequence.mask[:, :, None, None, None]
                inputs[name] = sequence
        labels = torch.stack(
            [torch.as_tensor(item["labels"], dtype=torch.float32) for item in items]
        )
        return Batch(
            ids=[str(item["id"]) for item in items], inputs=inputs, labels=labels, texts=texts
        )

    def _tokenize(self, texts: list[str]) -> TokenInput:
        assert self.tokenizer is not None
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.text_max_len,
            return_tensors="pt",
        )
        return TokenInput(
            input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"].long()
        )
