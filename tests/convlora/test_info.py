"""Parameter report on the meta device: the counts of the method notes, without weights."""

from __future__ import annotations

import time

import pytest

from convlora.config import ModelConfig
from convlora.info import parameter_report

DECODER = 3_505_536  # SAM's decoder without its IoU head, one mask token, one hypernetwork MLP


@pytest.mark.parametrize(
    ("variant", "adapter", "trainable", "adapters"),
    [
        ("vit_h", "conv-lora", 4_020_096, 514_560),
        ("vit_h", "lora", 3_997_056, 491_520),
        ("vit_h", "decoder", 3_505_536, 0),
        ("vit_b", "conv-lora", 3_624_768, 119_232),
    ],
)
def test_trainable_counts(variant: str, adapter: str, trainable: int, adapters: int) -> None:
    start = time.perf_counter()
    report = parameter_report(ModelConfig(sam_variant=variant, adapter=adapter, num_classes=1))
    assert time.perf_counter() - start < 10
    assert report["trainable_params"] == trainable
    groups = report["groups"]
    assert groups["encoder_adapters"] == {"total": adapters, "trainable": adapters}
    assert groups["mask_decoder"] == {"total": DECODER, "trainable": DECODER}
    assert groups["image_encoder"]["trainable"] == 0
    assert groups["prompt_encoder"]["trainable"] == 0
    assert report["total_params"] == sum(g["total"] for g in groups.values())


def test_vit_h_totals_and_multiclass_additions() -> None:
    report = parameter_report(ModelConfig(sam_variant="vit_h", adapter="full", num_classes=1))
    assert report["groups"]["image_encoder"]["total"] == 637_026_048
    assert report["groups"]["prompt_encoder"]["total"] == 6_220
    assert report["trainable_params"] == 637_026_048 + DECODER
    multi = parameter_report(
        ModelConfig(sam_variant="vit_h", num_classes=6, in_channels=7, band_init=(3, 2, 1))
    )
    extra = 5 * 256 + 257 * 7 + (7 * 3 + 3)  # 5 more tokens, class head, band adapter
    assert multi["trainable_params"] == 4_020_096 + extra
