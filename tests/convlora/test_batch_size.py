"""The prediction batch: 4 on the CPU; on CUDA the largest power of two that fits in memory
(measured on a GPU in tests/convlora/test_cuda.py)."""

from __future__ import annotations

import torch

from convlora.devices import (
    CPU_BATCH,
    batch_for_memory,
    inference_batch_size,
    largest_batch_within,
)
from convlora.model import build_model
from tests.support.tiny_sam import tiny_config


def test_the_batch_is_the_largest_power_of_two_that_fits() -> None:
    mib = 2**20
    assert batch_for_memory(100 * mib, 10 * mib, 64) == 8  # 10 fit: 8
    assert batch_for_memory(160 * mib, 10 * mib, 64) == 16  # exactly 16 fit
    assert batch_for_memory(10_000 * mib, 10 * mib, 64) == 64  # capped
    assert batch_for_memory(5 * mib, 10 * mib, 64) == 1  # none fits: one at a time
    assert batch_for_memory(-1.0, 10 * mib, 64) == 1  # the fixed cost alone is over budget


def test_on_the_cpu_the_batch_is_fixed_and_nothing_runs() -> None:
    model = build_model(tiny_config(image_size=64, num_classes=3)).eval()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    assert inference_batch_size(model, 3, 64, torch.device("cpu")) == CPU_BATCH == 4
    assert calls == []


def test_a_batch_whose_measured_peak_is_over_budget_is_halved_until_it_fits() -> None:
    """Peaks as measured on an H200 (tiny SAM, 256 px: 3.25 MiB a tile over 35 MiB fixed)."""
    mib = 2**20
    tried: list[int] = []

    def peak_of(n: int) -> float:
        tried.append(n)
        return (35 + 3.25 * n) * mib

    assert largest_batch_within(128, peak_of, 285 * mib) == 64
    assert tried == [128, 64]
    assert largest_batch_within(64, peak_of, 285 * mib) == 64
    assert largest_batch_within(8, peak_of, 10 * mib) == 1  # nothing fits: one at a time


def test_running_out_of_memory_counts_as_over_budget() -> None:
    def peak_of(n: int) -> float:
        if n > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return float(n)

    assert largest_batch_within(32, peak_of, 100.0) == 4
