"""From decoder outputs to per-pixel class scores and probabilities, always in fp32.

The scores are arg-maxed into class maps, so they are combined in fp32 with autocast switched
off: under bf16 autocast the einsum would run in bf16, whose 8-bit mantissa turns close scores
into exact ties.
"""

from __future__ import annotations

import torch

PROBA_EPS = 1e-6


def semantic_scores(mask_logits: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    """Mask2Former semantic inference: sum_q softmax(class_q)[c] * sigmoid(mask_q), (B, C, H, W).

    The last class logit ("no object") is dropped after the softmax. fp32 whatever the autocast
    state.
    """
    with torch.autocast(mask_logits.device.type, enabled=False):
        class_prob = class_logits.float().softmax(dim=-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", class_prob, mask_logits.float().sigmoid())


def normalize_scores(scores: torch.Tensor, eps: float = PROBA_EPS) -> torch.Tensor:
    """Scores (B, C, H, W) >= 0 to probabilities summing to 1 over C ((s + eps) / sum)."""
    scores = scores + eps
    return scores / scores.sum(dim=1, keepdim=True)


def class_probabilities(
    mask_logits: torch.Tensor, class_logits: torch.Tensor | None
) -> torch.Tensor:
    """(B, K, H, W) fp32 probabilities: [1 - p, p] in binary mode, normalised semantic scores
    else."""
    with torch.autocast(mask_logits.device.type, enabled=False):
        if class_logits is None:
            p = mask_logits[:, 0].float().sigmoid()
            return torch.stack([1 - p, p], dim=1)
        return normalize_scores(semantic_scores(mask_logits, class_logits))
