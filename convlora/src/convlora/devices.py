"""Device and precision: bf16 autocast on CUDA, fp32 on CPU (bf16 is ~12x slower on most CPUs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when available, else CPU; an explicit device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from convlora.errors import ConvLoRAInputError

        raise ConvLoRAInputError(f"--device {name}: CUDA is not available on this machine")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op (fp32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


CPU_BATCH = 4
"""Windows per forward pass on the CPU, where a larger batch buys nothing."""


class _Predicts(Protocol):
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...


def inference_batch_size(
    model: _Predicts,
    channels: int,
    tile_size: int,
    device: torch.device,
    *,
    maximum: int = 64,
    headroom: float = 0.8,
) -> int:
    """Windows per forward pass for prediction: `CPU_BATCH` off CUDA. On CUDA, two eager probe
    forwards (1 and 2 tiles, bf16 autocast) estimate the fixed and the per-tile peak memory; the
    batch is the largest power of two (at most `maximum`) whose peak fits in `headroom` of the
    memory free to PyTorch, checked by one forward of it (halved until it fits). A power of two
    keeps the choice, and so the run's record, stable when free memory varies a little."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    available = (free + cached) * headroom
    one, two = (_peak_bytes(model, n, channels, tile_size, device) for n in (1, 2))
    per_tile = max(two - one, 1)
    estimate = batch_for_memory(available - max(one - per_tile, 0), per_tile, maximum)
    return largest_batch_within(
        estimate, lambda n: _peak_bytes(model, n, channels, tile_size, device), available
    )


def largest_batch_within(batch: int, peak_of: Callable[[int], float], available: float) -> int:
    """Halve `batch` until one forward's measured peak (`peak_of(n)`, bytes; out of memory
    counts as too much) fits in `available` bytes. The probes' linear estimate can fall short:
    measured on an H200, 128 tiles of a tiny SAM at 256 px peaked at 416 MiB where 285 fit."""
    while batch > 1:
        try:
            if peak_of(batch) <= available:
                break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
        batch //= 2
    return batch


def batch_for_memory(available: float, per_tile: int, maximum: int) -> int:
    """The largest power of two of tiles of `per_tile` bytes that fits in `available` bytes,
    between 1 and `maximum`."""
    fits = max(int(available // per_tile), 1)
    return min(maximum, 1 << (fits.bit_length() - 1))


def _peak_bytes(model: _Predicts, n: int, channels: int, size: int, device: torch.device) -> int:
    """Peak CUDA memory one eager forward of `n` tiles allocates above what was allocated."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    images = torch.zeros(n, channels, size, size, device=device)
    with torch.inference_mode(), autocast(device), torch.compiler.set_stance("force_eager"):
        model.predict_proba(images)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)
