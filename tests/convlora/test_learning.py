"""The tiny SAM learns crop types from the bundled AgNet Landsat-8 / CDL tiles on the CPU."""

from __future__ import annotations

import pytest

from benchmarks.loss_choice import CLASS_NAMES, load_agnet, majority_baseline, train_once
from convlora.losses import DEFAULT_LOSS


@pytest.mark.slow
def test_tiny_sam_learns_crop_types() -> None:
    """80 steps from scratch (no SAM checkpoint: `full` adapter, mask tokens copied with noise)
    on rows <= 24, validated on rows >= 27: measured 3.57 -> 1.21 loss, mIoU 0.16 against the
    majority-class baseline's 0.024."""
    data = load_agnet()
    baseline = majority_baseline(data, len(CLASS_NAMES))["miou"]
    run = train_once(data, DEFAULT_LOSS, seed=0, steps=80, token_init="copy+noise")
    print(f"loss {run['first_loss']:.3f} -> {run['last_loss']:.3f}; "
          f"mIoU {run['miou']:.3f} vs majority {baseline:.3f}")  # fmt: skip
    assert run["last_loss"] < 0.5 * run["first_loss"]
    assert run["miou"] > 4 * baseline
