"""LoRA around a frozen `nn.Linear` (Hu et al. 2021), after microsoft/LoRA `loralib`."""

from __future__ import annotations

import math

import torch
from torch import nn


class LowRankAdapter(nn.Module):
    """Shared part of LoRA-type layers: a frozen base linear plus factors A (r, in), B (out, r).

    `lora_A` is Kaiming-uniform initialised and `lora_B` zero initialised, so the layer equals its
    base at step 0. The update is scaled by alpha / r.
    """

    def __init__(self, base: nn.Linear, rank: int = 3, alpha: float = 32.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, rank, device=device, dtype=dtype))
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_parameters(self) -> None:
        """Kaiming-uniform A (as `nn.Linear` and the official code), zero B."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


class LoRALinear(LowRankAdapter):
    """y = base(x) + x A^T B^T * alpha / r; `merge()` folds the update into the base weight."""

    def __init__(self, base: nn.Linear, rank: int = 3, alpha: float = 32.0) -> None:
        super().__init__(base, rank, alpha)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The dense update B A * scaling, shaped like the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Add the low-rank update into the base weight (for inference)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge()`."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        if self.merged:
            return y
        return y + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling
