"""Deterministic, resumable data order.

A ``RandomSampler`` with a seeded generator gives a different order each epoch only by advancing
that generator, so a run resumed at epoch 3 would replay epoch 1's order. Here each epoch's order
is a pure function of (seed, epoch); Lightning calls ``set_epoch`` at every epoch start (also
through its DDP sampler wrapper), so interrupted and uninterrupted runs see the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed + epoch``.

    Args:
        data_source: the dataset (only its length is used).
        seed: base seed of the run.
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        self.data_source = data_source
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


def make_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any],
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader[Any]:
    """A DataLoader whose order depends only on ``seed`` and the epoch (shuffled) or is fixed.

    Args:
        dataset: a map-style dataset.
        batch_size: items per batch.
        collate_fn: turns a list of items into a :class:`~mesm.data.batch.Batch`.
        shuffle: True for training (an :class:`EpochSeededSampler`), False for evaluation.
        seed: the run seed.
        num_workers: loader worker processes (seeded via ``seed_everything(workers=True)``).
    """
    sampler = EpochSeededSampler(dataset, seed) if shuffle else None  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=collate_fn,
        num_workers=num_workers,
        # Worker seeds are drawn from this generator, not the global RNG, so they do not depend on
        # how many loaders were iterated before.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )


__all__ = ["EpochSeededSampler", "make_loader"]
