"""Process-group setup under `torchrun`: gloo on CPU, NCCL on CUDA; helpers that also work alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place among the training processes (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """Read RANK, WORLD_SIZE and LOCAL_RANK as set by `torchrun`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """Under torchrun every process gets its own GPU (cuda:LOCAL_RANK)."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Join the process group if needed; returns True when this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=info.rank,
        world_size=info.world_size,
    )
    return True


def mean_across(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a scalar over all processes."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def sum_across(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise sum of a tensor over all processes (in place when distributed)."""
    if info.enabled:
        dist.all_reduce(tensor)
    return tensor


def gather_all(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
