"""Grouped expert dispatch: each Conv-LoRA expert runs only on the samples routed to it.

The group sizes are values (a host sync and data-dependent shapes), which `torch.compile`
cannot trace in one graph. `grouped_experts` wraps the whole dispatch as one opaque custom
operator with a fixed output shape (that of its input), so a compiled model on the CPU keeps
grouped dispatch (about M/2 times fewer expert FLOPs than running every expert on every sample)
with no graph break. Its backward, a second opaque operator, recomputes each expert's conv input
and calls the backward kernels autograd would call; every expert's weights get a gradient (zero
when no sample chose it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from convlora.layers.resize import bicubic_resize_backward, resize, upsample

Expert = Callable[[torch.Tensor], torch.Tensor]


def scale_expert(
    z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: int
) -> torch.Tensor:
    """Bicubic upsampling by `scale`, 3x3 conv (padding 1), GELU, bicubic back to z's size."""
    size = (z.shape[-2], z.shape[-1])
    if scale > 1:
        z = upsample(z, scale)
    z = F.gelu(F.conv2d(z, weight, bias, padding=1))
    if scale > 1:
        z = resize(z, size)
    return z


def groups(index: torch.Tensor, experts: int) -> tuple[torch.Tensor, list[int]]:
    """The sample order that sorts `index` (stable) and the number of samples per expert."""
    order = torch.argsort(index, stable=True)
    return order, torch.bincount(index, minlength=experts).tolist()


def run_grouped(
    z: torch.Tensor, order: torch.Tensor, counts: list[int], experts: Sequence[Expert]
) -> torch.Tensor:
    """Each sample of z (N, ...) through its expert, given `groups` of the routing: samples
    sorted by expert, each expert called once on its group (none when empty), outputs put back
    in input order."""
    chunks = z.index_select(0, order).split(counts)
    outputs = [expert(chunk) for expert, chunk in zip(experts, chunks, strict=True) if len(chunk)]
    return torch.cat(outputs).index_select(0, torch.argsort(order))


def _experts(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> list[Expert]:
    """Expert m (scale m + 1) as a function of its input."""
    return [
        partial(scale_expert, weight=w, bias=b, scale=m + 1)
        for m, (w, b) in enumerate(zip(weights, biases, strict=True))
    ]


@torch.library.custom_op("convlora::grouped_experts", mutates_args=())
def grouped_experts(
    z: torch.Tensor, index: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]
) -> torch.Tensor:
    """`run_grouped` over the scale experts given by their conv weights and biases."""
    return run_grouped(z, *groups(index, len(weights)), _experts(weights, biases))


@grouped_experts.register_fake
def _(
    z: torch.Tensor, index: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]
) -> torch.Tensor:
    return torch.empty_like(z)


def scale_expert_backward(
    grad: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of `scale_expert` for z, weight and bias, with the kernels autograd uses."""
    up = upsample(z, scale) if scale > 1 else z
    pre = F.conv2d(up, weight, bias, padding=1)
    if scale > 1:
        grad = bicubic_resize_backward(grad, list(pre.shape), None, None)
    grad = torch.ops.aten.gelu_backward.default(grad, pre)
    d_up, d_weight, d_bias = torch.ops.aten.convolution_backward.default(
        grad,
        up,
        weight,
        [bias.shape[0]],
        [1, 1],
        [1, 1],
        [1, 1],
        False,
        [0, 0],
        1,
        [True, True, True],
    )
    if scale > 1:
        d_up = bicubic_resize_backward(d_up.contiguous(), list(z.shape), float(scale), float(scale))
    return d_up, d_weight, d_bias


@torch.library.custom_op("convlora::grouped_experts_backward", mutates_args=())
def grouped_experts_backward(
    grad: torch.Tensor,
    z: torch.Tensor,
    index: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Gradients of `grouped_experts` for z, then every weight, then every bias (zero for an
    expert no sample chose)."""
    order, counts = groups(index, len(weights))
    chunks, grads = (
        z.index_select(0, order).split(counts),
        grad.index_select(0, order).split(counts),
    )
    d_z: list[torch.Tensor] = []
    d_weights, d_biases = (
        [torch.zeros_like(w) for w in weights],
        [torch.zeros_like(b) for b in biases],
    )
    for m, (chunk, chunk_grad) in enumerate(zip(chunks, grads, strict=True)):
        if len(chunk):
            d_chunk, d_weights[m], d_biases[m] = scale_expert_backward(
                chunk_grad, chunk, weights[m], biases[m], m + 1
            )
            d_z.append(d_chunk)
    return [torch.cat(d_z).index_select(0, torch.argsort(order)), *d_weights, *d_biases]


@grouped_experts_backward.register_fake
def _(
    grad: torch.Tensor,
    z: torch.Tensor,
    index: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
) -> list[torch.Tensor]:
    return [torch.empty_like(t) for t in (z, *weights, *biases)]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    z, index, weights, biases = inputs
    ctx.experts = len(weights)
    ctx.save_for_backward(z, index, *weights, *biases)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    z, index, *params = ctx.saved_tensors
    m = ctx.experts
    grads = grouped_experts_backward(grad.contiguous(), z, index, params[:m], params[m:])
    return grads[0], None, grads[1 : 1 + m], grads[1 + m :]


grouped_experts.register_autograd(_backward, setup_context=_setup_context)
