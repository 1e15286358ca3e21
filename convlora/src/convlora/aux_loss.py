"""Out-of-band collection of the Conv-LoRA load-balancing losses."""

from __future__ import annotations

import torch
from torch import nn

from convlora.layers.conv_lora import ConvLoRALinear


def pop_aux_loss(module: nn.Module, device: torch.device | None = None) -> torch.Tensor:
    """Sum and clear the `aux_loss` left by every ConvLoRALinear under `module` (0 if none)."""
    total: torch.Tensor | None = None
    for layer in module.modules():
        if isinstance(layer, ConvLoRALinear) and layer.aux_loss is not None:
            loss = layer.aux_loss
            total = loss if total is None else total + loss
            layer.aux_loss = None
    if total is None:
        return torch.zeros((), device=device)
    return total
