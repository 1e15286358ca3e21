"""Conv-LoRA (Zhong et al., ICLR 2024): LoRA with a mixture of multi-scale conv experts."""

from __future__ import annotations

import math

import torch
from torch import nn

from convlora.layers.gate import NoisyTopOneGate, Routing, fixed_routing
from convlora.layers.grouped import grouped_experts, groups, run_grouped, scale_expert
from convlora.layers.lora import LowRankAdapter

GATE_MODES = ("hard", "soft")
DISPATCHES = ("auto", "grouped", "batched")


class ScaleExpert(nn.Module):
    """Bicubic upsampling by `scale`, 3x3 conv r -> r, GELU, bicubic back to the input size.

    The resizes are `F.interpolate(..., mode="bicubic")` as an opaque operator (`layers.resize`),
    so that a compiled model runs PyTorch's own interpolation kernels."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=True)
        assert self.conv.bias is not None  # built with a bias
        nn.init.zeros_(self.conv.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return scale_expert(z, self.conv.weight, self.conv.bias, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ConvLoRALinear(LowRankAdapter):
    """Drop-in replacement for a frozen `nn.Linear` applied to a token map.

    The bottleneck z = A x, laid out as (N, r, H, W), is routed per sample (a SAM window or image)
    to one of M experts (expert m works at scale m, 1..M) by a noisy top-1 gate on the global
    average pool of z; the expert output is added to z, and y = base(x) + B (z + e) * alpha / r.

    Two dispatches give the same result (`dispatch`): "batched" runs every expert on all N
    samples and each sample keeps the output of its own expert: fixed shapes, no value read back
    to the host (CUDA graphs, no stalls on accelerators). "grouped" runs each expert only on the
    samples routed to it: about M/2 times fewer expert FLOPs, at the price of one host sync per
    layer; under torch.compile it runs as one opaque operator (`layers.grouped`), so the layer
    still compiles into one graph (`fullgraph=True`). "auto" (default) takes grouped on the CPU,
    where the sync is free and FLOPs are the cost, and batched on accelerators. Either way every
    expert takes part in every backward pass (experts no sample chose get a zero gradient), as
    DDP requires.

    `gate="hard"` is the official behaviour (the gate value does not scale the expert output, so
    the router learns only from the load-balancing loss); `gate="soft"` multiplies the expert
    output by the router's softmax probability of the chosen expert (Switch-Transformer style), so
    the task loss also trains the router. With a single expert there is nothing to route and the
    layer has no gate.

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
        if experts < 1:
            raise ValueError(f"Conv-LoRA needs at least one expert, got {experts}")
        super().__init__(base, rank, alpha)
        device, dtype = base.weight.device, base.weight.dtype
        self.gate_mode = gate
        self.gate = NoisyTopOneGate(rank, experts).to(device, dtype) if experts > 1 else None
        experts_list = [ScaleExpert(rank, m + 1) for m in range(experts)]
        self.experts = nn.ModuleList(experts_list).to(device, dtype)
        self.aux_loss: torch.Tensor | None = None
        self.dispatch = "auto"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, experts={len(self.experts)}, gate={self.gate_mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        z = x @ self.lora_A.T
        z_map = _to_map(z)
        features = z_map.mean(dim=(2, 3))
        routing = fixed_routing(features) if self.gate is None else self.gate(features)
        self.aux_loss = routing.aux_loss
        z_map = z_map + self.expert_residual(z_map, routing)
        z = _from_map(z_map, z.shape)
        return y + (z @ self.lora_B.T) * self.scaling

    def expert_residual(self, z: torch.Tensor, routing: Routing) -> torch.Tensor:
        """The routed expert's output for each sample of z (N, r, H, W), in input order, times
        the router's probability with the soft gate."""
        if self.dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {DISPATCHES}, got {self.dispatch!r}")
        grouped = self.dispatch == "grouped" or (self.dispatch == "auto" and z.device.type == "cpu")
        if not grouped:
            residual = self._batched(z, routing)
        elif torch.compiler.is_compiling():
            residual = self._grouped_operator(z, routing)
        else:
            residual = self._grouped(z, routing)
        if self.gate_mode == "soft":
            residual = residual * routing.prob.to(residual.dtype)[:, None, None, None]
        return residual

    def _batched(self, z: torch.Tensor, routing: Routing) -> torch.Tensor:
        """Every expert on the whole (contiguous) batch, outputs stacked to (M x N, r, H, W);
        sample i reads row index[i] x N + i. The gather keeps the outputs and, in backward, the
        gradients of the other experts exactly zero."""
        n = z.shape[0]
        z = z.contiguous()
        outputs = torch.stack([expert(z) for expert in self.experts]).flatten(0, 1)
        rows = routing.index * n + torch.arange(n, device=z.device)
        return outputs.index_select(0, rows)

    def _grouped(self, z: torch.Tensor, routing: Routing) -> torch.Tensor:
        """Each expert module once on its own samples, outputs in input order; experts without
        a sample join the graph with a zero term."""
        order, counts = groups(routing.index, len(self.experts))
        residual = run_grouped(z, order, counts, list(self.experts))
        if torch.is_grad_enabled():
            unused = [expert for expert, n in zip(self.experts, counts, strict=True) if not n]
            idle = [p.sum() for expert in unused for p in expert.parameters() if p.requires_grad]
            if idle:
                residual = residual + torch.stack(idle).sum() * 0.0
        return residual

    def _grouped_operator(self, z: torch.Tensor, routing: Routing) -> torch.Tensor:
        """The grouped dispatch as one opaque operator (for torch.compile)."""
        convs: list[nn.Conv2d] = [expert.conv for expert in self.experts]  # type: ignore[misc]
        weights = [conv.weight for conv in convs]
        biases = [conv.bias for conv in convs if conv.bias is not None]
        residual: torch.Tensor = grouped_experts(z.contiguous(), routing.index, weights, biases)
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
