"""A torch Dataset over a processed folder (see :mod:`mesm.data.format`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from mesm.data.format import (
    STATUS_OK,
    FormatError,
    UtteranceRecord,
    load_arrays,
    read_info,
    read_manifest,
)


class ProcessedDataset(Dataset[dict[str, Any]]):
    """Utterances of one split of a processed folder.

    Items are dicts: ``id`` (str), ``faces`` uint8 (S, 3, 48, 48), ``audio`` float32
    (K, 1, 128, 32), ``text`` (str) and ``labels`` float32 multi-hot (C,).

    Args:
        root: the processed folder.
        split: ``train``, ``valid``, ``test`` (or ``unassigned``); only ok records of it are kept.
        classes: label order of the multi-hot vector; None uses the folder's classes. Must be a
            subset of them. An utterance whose labels are all outside ``classes`` has an all-zero
            vector (a valid target for multi-label data).
        frame_interval_ms: keep one stored face frame every this many milliseconds; None keeps every
            stored frame. Must be a multiple of the stored interval (1000 / fps).

    Raises:
        FormatError: missing folder, manifest or format file, or another format version.
        ValueError: unknown classes, or a frame interval the stored frame rate cannot give.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str] | None = None,
        frame_interval_ms: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.info = read_info(self.root)
        self.classes: tuple[str, ...] = tuple(classes if classes is not None else self.info.classes)
        unknown = [name for name in self.classes if name not in self.info.classes]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not in {self.root}'s classes {self.info.classes}"
            )
        self.frame_stride = self._stride(frame_interval_ms)
        self.records: list[UtteranceRecord] = [
            record
            for record in read_manifest(self.root)
            if record.status == STATUS_OK and record.split == split
        ]
        self.split = split
        self._class_index = {name: index for index, name in enumerate(self.classes)}

    def _stride(self, frame_interval_ms: float | None) -> int:
        if frame_interval_ms is None:
            return 1
        stored_ms = 1000.0 / self.info.fps
        stride = round(frame_interval_ms / stored_ms)
        if stride < 1 or abs(stride * stored_ms - frame_interval_ms) > 1e-6 * stored_ms:
            raise ValueError(
                f"frame_interval_ms={frame_interval_ms} is not a multiple of the stored frame "
                f"interval {stored_ms:g} ms ({self.info.fps:g} fps in {self.root}); rebuild with "
                "another --fps or pick a multiple"
            )
        return stride

    def __len__(self) -> int:
        return len(self.records)

    def labels_tensor(self, record: UtteranceRecord) -> torch.Tensor:
        """(C,) float32 multi-hot vector of a record."""
        labels = torch.zeros(len(self.classes), dtype=torch.float32)
        indices = [self._class_index[name] for name in record.labels if name in self._class_index]
        labels[indices] = 1.0
        return labels

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        faces, audio = load_arrays(self.root, record.id)
        if len(faces) == 0 or len(audio) == 0:
            raise FormatError(f"utterance file of {record.id} in {self.root} holds an empty array")
        return {
            "id": record.id,
            "faces": torch.from_numpy(faces[:: self.frame_stride].copy()),
            "audio": torch.from_numpy(audio),
            "text": record.text,
            "labels": self.labels_tensor(record),
        }

    def label_matrix(self) -> torch.Tensor:
        """(N, C) multi-hot labels of every item, without reading any npz (for pos_weight)."""
        if not self.records:
            return torch.zeros((0, len(self.classes)))
        return torch.stack([self.labels_tensor(record) for record in self.records])
