"""Run a module one sample at a time, so that its outputs cannot depend on the rest of the batch.

PyTorch's CPU kernels are not batch invariant: GELU takes a vectorised path for most elements
and a scalar one for the tail, convolution switches between its native and oneDNN backends by
batch size, and weight-gradient reductions are blocked by batch. Two dispatch schemes that give
an expert different batches therefore differ in the last bits even when they compute the same
function. Wrapping the experts in `OneSampleAtATime` removes that effect and leaves the dispatch
itself to compare bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn


class OneSampleAtATime(nn.Module):
    """`module` applied to each sample alone (a fresh contiguous copy), outputs concatenated."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.module(x[i : i + 1].clone()) for i in range(x.shape[0])])


def one_sample_at_a_time(experts: nn.ModuleList) -> nn.ModuleList:
    """The same experts (shared parameters), each applied one sample at a time."""
    return nn.ModuleList(OneSampleAtATime(expert) for expert in experts)
