"""Deterministic data order: a seeded permutation per epoch, sharded by process, resumable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset

Item = dict[str, Any]
"""One training or validation item: `image` (C, H, W) float32, `label` (H, W) int64, optionally
`valid` (H, W)."""


class ItemDataset(Protocol):
    """A map-style dataset of `Item`s: a torch `Dataset` with a length, or a plain list."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Item: ...


@dataclass(frozen=True)
class EpochPlan:
    """How one epoch is cut into forward passes ("micro-batches") and optimiser steps.

    Every process takes `batch_size` items per micro-batch; together the processes consume
    `global_batch = batch_size x world_size` items per micro-batch. The items left over after the
    last full global micro-batch are skipped for this epoch (the permutation changes every epoch, so
    every item is seen). The last optimiser step of an epoch may accumulate fewer micro-batches.
    """

    num_items: int
    batch_size: int
    world_size: int
    accumulate: int

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def micro_batches(self) -> int:
        return self.num_items // self.global_batch

    @property
    def steps(self) -> int:
        return -(-self.micro_batches // self.accumulate)

    def group_size(self, step_in_epoch: int) -> int:
        """Micro-batches accumulated by optimiser step `step_in_epoch` (0-based)."""
        first = step_in_epoch * self.accumulate
        return min(self.accumulate, self.micro_batches - first)


def epoch_permutation(num_items: int, seed: int, epoch: int) -> list[int]:
    """The order of the items in `epoch`: the same for every process, run and resumption."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator).tolist()


def rank_indices(
    plan: EpochPlan, seed: int, epoch: int, rank: int, start_micro_batch: int = 0
) -> list[int]:
    """Items this process reads in `epoch` from micro-batch `start_micro_batch` on, in order.

    Micro-batch k covers global positions [k x global_batch, (k + 1) x global_batch) of the
    permutation; process r takes the r-th slice of `batch_size` items, so one process with batch
    B x N sees exactly the items of N processes with batch B.
    """
    order = epoch_permutation(plan.num_items, seed, epoch)
    out: list[int] = []
    for k in range(start_micro_batch, plan.micro_batches):
        begin = k * plan.global_batch + rank * plan.batch_size
        out.extend(order[begin : begin + plan.batch_size])
    return out


def make_loader(
    dataset: ItemDataset, indices: Sequence[int], batch_size: int, num_workers: int, seed: int
) -> DataLoader[Item]:
    """A loader over `indices` in that order, drawing nothing from the global random generators."""
    return DataLoader(
        cast(Dataset[Item], dataset),  # DataLoader only indexes it (map-style, explicit sampler)
        batch_size=batch_size,
        sampler=list(indices),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
