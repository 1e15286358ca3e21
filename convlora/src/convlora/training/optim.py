"""AdamW with decay-free biases, norms and tokens, and a linear warmup / linear decay schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.modules.batchnorm._NormBase)
BETAS = (0.9, 0.999)
EPS = 1e-6


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into a decayed group and a decay-free group.

    Decay-free: biases and every other tensor with fewer than 2 dimensions (norm weights, SAM's
    LayerNorm2d), parameters of norm and embedding modules (mask and IoU tokens), and parameters
    named like tokens or positional embeddings. Groups are named and sorted by parameter name, so
    the optimiser state lines up across processes and resumptions.
    """
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{param_name}" if module_name else param_name
            exempt = (
                param.ndim < 2
                or isinstance(module, NO_DECAY_MODULES)
                or "norm" in type(module).__name__.lower()
                or any(word in param_name for word in ("token", "embed"))
            )
            (no_decay if exempt else decay).append((name, param))
    groups = []
    for group_name, members, wd in (("decay", decay, weight_decay), ("no_decay", no_decay, 0.0)):
        members.sort(key=lambda item: item[0])
        if members:
            groups.append(
                {
                    "name": group_name,
                    "params": [p for _, p in members],
                    "param_names": [n for n, _ in members],
                    "weight_decay": wd,
                }
            )
    return groups


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, betas (0.9, 0.999), eps 1e-6, as in the official recipe."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS)


class LinearSchedule:
    """Learning-rate factor: linear warmup from 0, then linear decay to 0 at `total` steps."""

    def __init__(self, total: int, warmup: int = 0) -> None:
        self.total = max(1, int(total))
        self.warmup = max(0, min(int(warmup), self.total - 1))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(0.0, (self.total - step) / (self.total - self.warmup))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepping once per optimiser step; the first step uses the full (or warmup) lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearSchedule(total_steps, warmup_steps))
