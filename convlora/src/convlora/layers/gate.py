"""Noisy top-1 gating with a load-balancing loss (Shazeer et al. 2017), as in Conv-LoRA."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Routing:
    """Result of gating N samples over M experts."""

    index: torch.Tensor  # (N,) int64, the chosen expert per sample
    prob: torch.Tensor  # (N,) softmax probability of the chosen expert over all M logits
    aux_loss: torch.Tensor  # scalar load-balancing loss


def fixed_routing(features: torch.Tensor) -> Routing:
    """Every sample to expert 0 with probability 1 and no auxiliary loss (a single expert)."""
    n = features.shape[0]
    return Routing(
        index=torch.zeros(n, dtype=torch.int64, device=features.device),
        prob=features.new_ones(n),
        aux_loss=features.new_zeros(()),
    )


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation var(x) / (mean(x)^2 + 1e-10); 0 for a single value."""
    x = x.float()
    if x.shape[0] == 1:
        return x.new_zeros(())
    return x.var() / (x.mean() ** 2 + 1e-10)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF, written like `torch.distributions.Normal(0, 1).cdf`."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


class NoisyTopOneGate(nn.Module):
    """The official Conv-LoRA `MoEGate` with k = 1.

    Logits are `features @ w_gate`; in training, Gaussian noise with standard deviation
    `softplus(features @ w_noise) + noise_epsilon` is added. Each sample goes to its arg-max
    expert; ties (e.g. the all-zero logits at initialisation in eval) go to the lowest index, so
    eval routing is deterministic (expert 0, scale 1, at step 0). The auxiliary loss is
    `loss_coef * (cv²(importance) + cv²(load))`; in training the load is the differentiable
    normal-CDF estimate `_prob_in_top_k`, otherwise the count of samples per expert. As in the
    official code the importance comes from the one-hot top-1 gates, so `w_gate` and `w_noise`
    learn only through the load term unless the caller also uses `Routing.prob`.
    """

    def __init__(
        self,
        features: int,
        experts: int,
        noise_epsilon: float = 1e-2,
        loss_coef: float = 1e-2,
    ) -> None:
        super().__init__()
        self.experts = experts
        self.noise_epsilon = noise_epsilon
        self.loss_coef = loss_coef
        self.w_gate = nn.Parameter(torch.zeros(features, experts))
        self.w_noise = nn.Parameter(torch.zeros(features, experts))

    def forward(self, features: torch.Tensor) -> Routing:
        clean = features @ self.w_gate
        noisy = self.training
        if noisy:
            std = F.softplus(features @ self.w_noise) + self.noise_epsilon
            logits = clean + torch.randn_like(clean) * std
        else:
            logits = clean
        index = logits.argmax(dim=1)
        one_hot = F.one_hot(index, self.experts).to(logits.dtype)
        importance = one_hot.sum(0)
        if noisy and self.experts > 1:
            top2 = logits.topk(2, dim=1).values
            load = self._prob_in_top_one(clean, logits, std, top2).sum(0)
        else:
            load = (one_hot > 0).sum(0)
        aux = self.loss_coef * (cv_squared(importance) + cv_squared(load))
        prob = logits.softmax(dim=1).gather(1, index[:, None]).squeeze(1)
        return Routing(index=index, prob=prob, aux_loss=aux)

    @staticmethod
    def _prob_in_top_one(
        clean: torch.Tensor, noisy: torch.Tensor, std: torch.Tensor, top2: torch.Tensor
    ) -> torch.Tensor:
        """P(expert m is the top-1 choice under fresh noise), per sample and expert.

        The official `_prob_in_top_k` with k = 1: an expert currently chosen must stay above the
        runner-up value; any other must exceed the current maximum.
        """
        threshold_if_in = top2[:, 1:2]
        threshold_if_out = top2[:, 0:1]
        is_in = noisy > threshold_if_in
        prob_if_in = normal_cdf((clean - threshold_if_in) / std)
        prob_if_out = normal_cdf((clean - threshold_if_out) / std)
        return torch.where(is_in, prob_if_in, prob_if_out)

    def extra_repr(self) -> str:
        return f"experts={self.experts}, noise_epsilon={self.noise_epsilon}"
