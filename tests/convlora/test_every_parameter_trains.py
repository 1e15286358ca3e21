"""Every trainable parameter takes part in every loss, the condition for plain DDP: no expert is
left out by routing and an image without targets keeps its masks in the graph."""

from __future__ import annotations

import math

import pytest
import torch

from convlora.losses import build_criterion
from convlora.model import build_model
from tests.support.tiny_sam import tiny_config

CASES = [  # adapter, config overrides, loss, labels
    ("conv-lora", {}, "hungarian", "labelled"),  # one window per layer: 7 of 8 experts unused
    ("conv-lora", {}, "hungarian", "ignored"),
    ("conv-lora", {"gate": "soft"}, "hungarian", "ignored"),
    ("conv-lora", {"experts": 1}, "hungarian", "ignored"),
    ("lora", {}, "hungarian", "ignored"),
    ("decoder", {}, "hungarian", "ignored"),
    ("full", {}, "hungarian", "ignored"),
    ("conv-lora", {}, "semantic", "ignored"),
    ("conv-lora", {"num_classes": 1}, "hungarian", "ignored"),  # binary: BCE + dice
]


@pytest.mark.parametrize(("adapter", "options", "loss", "labels"), CASES)
def test_every_trainable_parameter_gets_a_gradient(
    adapter: str, options: dict, loss: str, labels: str
) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(image_size=32, adapter=adapter, in_channels=4, band_init=(2, 1, 0))
    cfg = type(cfg).from_dict({**cfg.to_dict(), **options})
    model = build_model(cfg).train()
    y = torch.randint(0, cfg.num_outputs, (1, 32, 32))
    if labels == "ignored":  # a nodata tile: nothing to match, no valid pixel
        y[:] = 255
    parts = build_criterion(loss, cfg.num_classes)(model(torch.randn(1, 4, 32, 32)), y)
    assert math.isfinite(float(parts["loss"].detach()))
    parts["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
