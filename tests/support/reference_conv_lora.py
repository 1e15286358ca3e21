"""Reference: the grouped-dispatch Conv-LoRA layer as it was before the sync-free rewrite.

A verbatim copy of `convlora/layers/conv_lora.py` at commit c0724e9 (only this docstring
differs). It sorts the windows by expert, reads the group sizes to the host (`.tolist()`, one
synchronisation per layer) and runs each expert once on its group; the tests check that the
sync-free layer computes the same outputs, auxiliary loss and gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convlora.layers.gate import NoisyTopOneGate, Routing
from convlora.layers.lora import LowRankAdapter

GATE_MODES = ("hard", "soft")


class ScaleExpert(nn.Module):
    """Bicubic upsampling by `scale`, 3x3 conv r -> r, GELU, bicubic back to the input size."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=True)
        self.act = nn.GELU()
        nn.init.zeros_(self.conv.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        size = z.shape[-2:]
        if self.scale > 1:
            z = F.interpolate(z, scale_factor=self.scale, mode="bicubic")
        z = self.act(self.conv(z))
        if self.scale > 1:
            z = F.interpolate(z, size=size, mode="bicubic")
        return z

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ConvLoRALinear(LowRankAdapter):
    """Drop-in replacement for a frozen `nn.Linear` applied to a token map.

    The bottleneck z = A x, laid out as (N, r, H, W), is routed per sample (a SAM window or image)
    to one of M experts (expert m works at scale m, 1..M) by a noisy top-1 gate on the global
    average pool of z; the expert output is added to z, and y = base(x) + B (z + e) * alpha / r.
    Each expert runs once on all the samples routed to it.

    `gate="hard"` is the official behaviour (the gate value does not scale the expert output, so
    the router learns only from the load-balancing loss); `gate="soft"` multiplies the expert
    output by the router's softmax probability of the chosen expert (Switch-Transformer style), so
    the task loss also trains the router.

    The layer returns a tensor; its load-balancing loss of the last forward is kept in
    `self.aux_loss` and collected out of band (see `convlora.aux_loss`).

    Inputs are (N, H, W, C) token maps (SAM's attention and MLP inputs) or (N, L, C) with L a
    square number.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int = 3,
        alpha: float = 32.0,
        experts: int = 8,
        gate: str = "hard",
    ) -> None:
        if gate not in GATE_MODES:
            raise ValueError(f"gate must be one of {GATE_MODES}, got {gate!r}")
        super().__init__(base, rank, alpha)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.gate_mode = gate
        self.gate = NoisyTopOneGate(rank, experts).to(**factory)
        self.experts = nn.ModuleList(ScaleExpert(rank, m + 1) for m in range(experts)).to(**factory)
        self.aux_loss: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, experts={len(self.experts)}, gate={self.gate_mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        z = x @ self.lora_A.T
        z_map = _to_map(z)
        routing = self.gate(z_map.mean(dim=(2, 3)))
        self.aux_loss = routing.aux_loss
        z_map = z_map + self.expert_residual(z_map, routing)
        z = _from_map(z_map, z.shape)
        return y + (z @ self.lora_B.T) * self.scaling

    def expert_residual(self, z: torch.Tensor, routing: Routing) -> torch.Tensor:
        """Run each expert once on its samples of z (N, r, H, W); return outputs in input order."""
        order = torch.argsort(routing.index, stable=True)
        counts = torch.bincount(routing.index, minlength=len(self.experts)).tolist()
        chunks = z.index_select(0, order).split(counts)
        outputs = [
            expert(chunk)
            for expert, chunk in zip(self.experts, chunks, strict=True)
            if chunk.shape[0] > 0
        ]
        residual = torch.cat(outputs).index_select(0, torch.argsort(order))
        if self.gate_mode == "soft":
            residual = residual * routing.prob.to(residual.dtype)[:, None, None, None]
        return residual


def _to_map(z: torch.Tensor) -> torch.Tensor:
    """(N, H, W, r) or (N, L, r) with square L -> (N, r, H, W)."""
    if z.dim() == 4:
        return z.permute(0, 3, 1, 2)
    if z.dim() == 3:
        side = math.isqrt(z.shape[1])
        if side * side != z.shape[1]:
            raise ValueError(f"ConvLoRALinear needs a square token count, got {z.shape[1]}")
        return z.reshape(z.shape[0], side, side, z.shape[2]).permute(0, 3, 1, 2)
    raise ValueError(f"ConvLoRALinear expects (N, H, W, C) or (N, L, C), got {tuple(z.shape)}")


def _from_map(z_map: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of `_to_map`."""
    return z_map.permute(0, 2, 3, 1).reshape(shape)
