"""A tiny model and a tiny learnable in-memory dataset for the training-library tests.

The model only honours the contract the library relies on: ``model(batch.inputs)`` returns an
output with ``logits`` (B, C) and ``modality_logits``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mesm.data.batch import Batch, SequenceInput

CLASS_NAMES = ["ang", "hap", "neu"]


@dataclass
class TinyOutput:
    logits: Tensor
    modality_logits: dict[str, Tensor]


class TinyModel(nn.Module):
    """Masked mean over audio steps, dropout, linear classifier. (B, S, 1, 4, 4) -> (B, C)."""

    def __init__(self, num_classes: int = len(CLASS_NAMES), dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, inputs: dict[str, Any]) -> TinyOutput:
        audio: SequenceInput = inputs["audio"]
        mask = audio.mask.float()
        # (B, S, 1, 4, 4) -> (B, S, 16)
        values = audio.values.flatten(2)
        pooled = (values * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        logits = self.classifier(self.dropout(pooled))
        return TinyOutput(logits=logits, modality_logits={"audio": logits})


class TinyDataset(Dataset[dict[str, Any]]):
    """Single-label items whose class is written into the features (learnable in a few epochs).

    Each item has 1-3 steps of 1x4x4 maps: noise plus a class-specific pattern.
    """

    def __init__(self, size: int, seed: int, prefix: str, noise: float = 1.5) -> None:
        rng = np.random.default_rng(seed)
        patterns = np.random.default_rng(1234).normal(size=(len(CLASS_NAMES), 16))
        self.items: list[dict[str, Any]] = []
        for index in range(size):
            label = index % len(CLASS_NAMES)
            steps = int(rng.integers(1, 4))
            values = patterns[label] + noise * rng.normal(size=(steps, 16))
            one_hot = np.zeros(len(CLASS_NAMES), dtype=np.float32)
            one_hot[label] = 1.0
            self.items.append(
                {
                    "id": f"{prefix}{index:03d}",
                    "audio": torch.tensor(values, dtype=torch.float32).reshape(steps, 1, 4, 4),
                    "labels": torch.from_numpy(one_hot),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    def label_matrix(self) -> np.ndarray:
        return np.stack([item["labels"].numpy() for item in self.items])


def collate(items: list[dict[str, Any]]) -> Batch:
    steps = max(item["audio"].shape[0] for item in items)
    values = torch.zeros(len(items), steps, 1, 4, 4)
    mask = torch.zeros(len(items), steps, dtype=torch.bool)
    for row, item in enumerate(items):  # test-side collate: a handful of items
        values[row, : item["audio"].shape[0]] = item["audio"]
        mask[row, : item["audio"].shape[0]] = True
    return Batch(
        ids=[item["id"] for item in items],
        inputs={"audio": SequenceInput(values=values, mask=mask)},
        labels=torch.stack([item["labels"] for item in items]),
        texts=["" for _ in items],
    )


class NaNAfter(nn.Module):
    """``TinyModel`` whose logits turn NaN from the ``after``-th training forward on (0-based)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.inner = TinyModel()
        self.after = after
        self.training_calls = 0

    def forward(self, inputs: dict[str, Any]) -> TinyOutput:
        output = self.inner(inputs)
        if self.training:
            if self.training_calls >= self.after:
                output = TinyOutput(output.logits * float("nan"), output.modality_logits)
            self.training_calls += 1
        return output


def state_hash(state_dict: dict[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class WriteStateHash(L.Callback):
    """At the end of training, every rank writes the hash of its model weights to a file."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = f"{self.folder}/rank{trainer.global_rank}_of_{trainer.world_size}.txt"
        with open(path, "w") as handle:
            handle.write(state_hash(pl_module.model.state_dict()))
