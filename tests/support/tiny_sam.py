"""Tiny SAM models and official-format checkpoints built from the registry (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from convlora.config import ModelConfig
from convlora.registry import build_sam_variant


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Give every tensor (zero-initialised ones included) random, distinct values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return module


def save_tiny_sam(path: Path, image_size: int = 256, seed: int = 0) -> Path:
    """An official-format SAM checkpoint (plain state dict) of the tiny variant."""
    torch.manual_seed(seed)
    sam = randomize_(build_sam_variant("tiny", image_size), seed)
    torch.save(sam.state_dict(), path)
    return path


def tiny_config(**overrides: Any) -> ModelConfig:
    """A tiny multi-class Conv-LoRA config; keyword arguments override fields."""
    values: dict[str, Any] = {
        "sam_variant": "tiny",
        "image_size": 256,
        "adapter": "conv-lora",
        "num_classes": 4,
    }
    values.update(overrides)
    return ModelConfig(**values)
