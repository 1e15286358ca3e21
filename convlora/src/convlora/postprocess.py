"""From decoder outputs to per-pixel class scores and probabilities."""

from __future__ import annotations

import torch

PROBA_EPS = 1e-6


def semantic_scores(mask_logits: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    """Mask2Former semantic inference: sum_q softmax(class_q)[c] * sigmoid(mask_q), (B, C, H, W).

    The last class logit ("no object") is dropped after the softmax.
    """
    class_prob = class_logits.float().softmax(dim=-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", class_prob, mask_logits.float().sigmoid())


def normalize_scores(scores: torch.Tensor, eps: float = PROBA_EPS) -> torch.Tensor:
    """Scores (B, C, H, W) >= 0 to probabilities summing to 1 over C ((s + eps) / sum)."""
    scores = scores + eps
    return scores / scores.sum(dim=1, keepdim=True)


def class_probabilities(
    mask_logits: torch.Tensor, class_logits: torch.Tensor | None
) -> torch.Tensor:
    """(B, K, H, W) probabilities: [1 - p, p] in binary mode, normalised semantic scores else."""
    if class_logits is None:
        p = mask_logits[:, 0].float().sigmoid()
        return torch.stack([1 - p, p], dim=1)
    return normalize_scores(semantic_scores(mask_logits, class_logits))
