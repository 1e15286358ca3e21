"""Parameter counts of a configuration, computed on the meta device (no weights allocated)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convlora.config import ModelConfig
from convlora.inject import adapter_parameters
from convlora.model import SegmentationSAM, build_model


def parameter_groups(model: SegmentationSAM) -> dict[str, list[nn.Parameter]]:
    """Parameters of a SegmentationSAM by part: band adapter, image encoder, encoder adapters,
    prompt encoder, mask decoder (adapter tensors apart from the encoder)."""
    adapters = adapter_parameters(model.image_encoder)
    adapter_ids = {id(p) for _, p in adapters}
    return {
        "band_adapter": list(model.band_adapter.parameters()),
        "image_encoder": [p for p in model.image_encoder.parameters() if id(p) not in adapter_ids],
        "encoder_adapters": [p for _, p in adapters],
        "prompt_encoder": list(model.prompt_encoder.parameters()),
        "mask_decoder": list(model.mask_decoder.parameters()),
    }


def count_parameters(model: SegmentationSAM) -> dict[str, Any]:
    """total_params, trainable_params, trainable_percent and per-group {total, trainable}."""
    groups = {
        name: {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }
        for name, params in parameter_groups(model).items()
    }
    total = sum(g["total"] for g in groups.values())
    trainable = sum(g["trainable"] for g in groups.values())
    return {
        "total_params": total,
        "trainable_params": trainable,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "groups": groups,
    }


def parameter_report(cfg: ModelConfig) -> dict[str, Any]:
    """Parameter counts of the model `cfg` describes, built on the meta device (fast, no weights).

    Returns {"config", "total_params", "trainable_params", "trainable_percent", "groups"}.
    """
    with torch.device("meta"):
        model = build_model(cfg)
    return {"config": cfg.to_dict(), **count_parameters(model)}
