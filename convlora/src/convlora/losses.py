"""Segmentation losses: Mask2Former-style Hungarian set loss, per-pixel semantic loss, binary loss.

Every criterion maps (SegmentationOutput, labels (B, H, W) int64) to a dict whose "loss" is the
task loss plus the output's Conv-LoRA auxiliary loss (weight 1, as in the official code). Pixels
labelled `ignore_index` count nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convlora.config import DEFAULT_LOSS, IGNORE_INDEX, LOSSES
from convlora.matching import linear_sum_assignment
from convlora.model import SegmentationOutput
from convlora.postprocess import PROBA_EPS, normalize_scores, semantic_scores

UNLABELLED = -100  # class target of the queries of an image with no labelled pixel (ignored)


def dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1) over the last dim, per row."""
    numerator = 2 * (prob * target).sum(-1)
    denominator = prob.sum(-1) + target.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def query_class_loss(
    class_logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the queries' class logits (B, Q, K + 1) against their class targets
    (B, Q), weighted per class; UNLABELLED targets count nowhere. The weighted mean of
    `F.cross_entropy`, but 0 rather than NaN (0 / 0) when every target is UNLABELLED, without a
    host sync to find out."""
    weight = weight.to(class_logits.device)
    targets = targets.flatten()
    total = F.cross_entropy(
        class_logits.flatten(0, 1), targets, weight=weight, ignore_index=UNLABELLED,
        reduction="sum",
    )  # fmt: skip
    counted = (targets != UNLABELLED) * weight[targets.clamp(0, len(weight) - 1)]
    return total / counted.sum().clamp_min(1e-12)


def _query_class_weights(
    class_weights: torch.Tensor | None, num_classes: int, no_object_weight: float
) -> torch.Tensor:
    """Weights of the queries' class cross-entropy: the class weights (1 each without them),
    then "no object"'s."""
    weights = torch.ones(num_classes) if class_weights is None else class_weights
    return torch.cat([weights, torch.tensor([no_object_weight])])


def _class_weight_tensor(
    class_weights: Sequence[float] | None, num_classes: int
) -> torch.Tensor | None:
    if class_weights is None:
        return None
    if len(class_weights) != num_classes:
        raise ValueError(f"class_weights has {len(class_weights)} values, expected {num_classes}")
    return torch.tensor(list(class_weights), dtype=torch.float32)


class BinaryLoss(nn.Module):
    """Binary single-mask mode: BCE + dice on mask token 0 (labels 0/1)."""

    def __init__(
        self, ignore_index: int = IGNORE_INDEX, class_weights: Sequence[float] | None = None
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.class_weights = _class_weight_tensor(class_weights, 2)

    def forward(self, output: SegmentationOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = output.mask_logits[:, 0].float()
        valid = labels != self.ignore_index
        target = (labels == 1).float()
        weight = valid.float()
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(logits.device)[labels.clamp(0, 1)]
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
        bce = bce / weight.sum().clamp_min(1.0)
        prob = logits.sigmoid() * valid
        dice = dice_loss(prob.flatten(1), (target * valid).flatten(1)).mean()
        loss = bce + dice + output.aux_loss
        return {"loss": loss, "loss_bce": bce, "loss_dice": dice, "aux_loss": output.aux_loss}


class SemanticLoss(nn.Module):
    """Per-pixel cross-entropy + multi-class soft dice on the normalised semantic scores, plus
    a class loss that gives query c to class c.

    The class loss is cross-entropy of each query's class logits against a fixed assignment:
    query c (c < num_classes) is class c where the image holds class c and "no object"
    (weighted `no_object_weight`, the classes by `class_weights`) where it does not; further
    queries and images with no labelled pixel have no class target. Without it the queries of
    an untrained model start alike, their masks cancel out of the normalised scores, and the
    per-pixel loss alone never tells them apart: the model stays at the class prior.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        class_weights: Sequence[float] | None = None,
        no_object_weight: float = 0.1,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_weights = _class_weight_tensor(class_weights, num_classes)
        self.query_weight = _query_class_weights(self.class_weights, num_classes, no_object_weight)

    def forward(self, output: SegmentationOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if output.class_logits is None:
            raise ValueError("semantic loss needs class logits (num_classes > 1)")
        prob = normalize_scores(semantic_scores(output.mask_logits, output.class_logits))
        weight = None if self.class_weights is None else self.class_weights.to(prob.device)
        valid = labels != self.ignore_index
        pixel_weight = valid.float()
        if weight is not None:
            pixel_weight = pixel_weight * weight[labels.clamp(0, self.num_classes - 1)]
        # nll_loss's weighted mean, but 0 rather than NaN (0 / 0) when every pixel is ignored
        ce = F.nll_loss(
            prob.clamp_min(PROBA_EPS).log(), labels, weight=weight,
            ignore_index=self.ignore_index, reduction="sum",
        ) / pixel_weight.sum().clamp_min(1e-12)  # fmt: skip
        valid_map = valid.unsqueeze(1)
        one_hot = F.one_hot(labels.clamp(0, self.num_classes - 1), self.num_classes)
        one_hot = one_hot.permute(0, 3, 1, 2) * valid_map
        p = (prob * valid_map).transpose(0, 1).flatten(1)
        dice = dice_loss(p, one_hot.transpose(0, 1).flatten(1).float()).mean()
        class_logits = output.class_logits.float()
        targets = self._query_targets(one_hot.flatten(2).any(-1), class_logits.shape[1])
        query_ce = query_class_loss(class_logits, targets, self.query_weight)
        loss = ce + dice + query_ce + output.aux_loss
        return {
            "loss": loss,
            "loss_ce": ce,
            "loss_dice": dice,
            "loss_class": query_ce,
            "aux_loss": output.aux_loss,
        }

    def _query_targets(self, present: torch.Tensor, q: int) -> torch.Tensor:
        """The class targets (B, Q) of the fixed assignment, from the classes each image holds
        (`present`, B x K): query c is class c where the image holds it, "no object" where not."""
        b, k = present.shape[0], min(q, self.num_classes)
        classes = torch.arange(k, device=present.device).expand(b, k)
        targets = torch.full((b, q), UNLABELLED, dtype=torch.long, device=present.device)
        targets[:, :k] = torch.where(present[:, :k], classes, self.num_classes)
        targets[~present.any(1)] = UNLABELLED  # nothing labelled: nothing to learn
        return targets


class HungarianLoss(nn.Module):
    """The official multi-class loss (Mask2Former): bipartite matching of queries to class masks.

    Each image's ground truth becomes one binary mask per class present. Queries are matched with
    `scipy.optimize.linear_sum_assignment` on cost_class * (-p(class)) + cost_mask * BCE +
    cost_dice * dice. Loss = CE over all queries (unmatched ones to "no object", weighted
    `no_object_weight`) + BCE + dice of the matched masks averaged over the number of target masks,
    with weights 1 : 1 : 1 as in effect in the official code. Unlike Mask2Former's point sampling,
    costs and losses use every valid pixel (deterministic), and ignored pixels are excluded. An
    image with no labelled pixel teaches nothing: its queries are left out of the class loss
    (otherwise every query, the background's too, would learn "no object" there, and the model
    would predict nothing confidently on unlabelled ground).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        class_weights: Sequence[float] | None = None,
        no_object_weight: float = 0.1,
        cost_class: float = 1.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ce_weight = _query_class_weights(
            _class_weight_tensor(class_weights, num_classes), num_classes, no_object_weight
        )
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice

    def _targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(class ids (T,), masks (T, P) over valid pixels, valid (H*W,)) of one label map."""
        flat = labels.flatten()
        valid = flat != self.ignore_index
        values = flat[valid]
        ids = torch.unique(values)
        masks = (values[None, :] == ids[:, None]).float()
        return ids, masks, valid

    @torch.no_grad()
    def _match(
        self, logits: torch.Tensor, cls: torch.Tensor, ids: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (query, target) of the minimum-cost assignment for one image."""
        cost_class = -cls.softmax(-1)[:, ids]
        pixels = max(masks.shape[1], 1)
        pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        cost_mask = (pos @ masks.T + neg @ (1 - masks).T) / pixels
        prob = logits.sigmoid()
        cost_dice = 1 - (2 * prob @ masks.T + 1) / (prob.sum(-1)[:, None] + masks.sum(-1)[None] + 1)
        cost = (
            self.cost_class * cost_class + self.cost_mask * cost_mask + self.cost_dice * cost_dice
        )
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        device = logits.device
        return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)

    def forward(self, output: SegmentationOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if output.class_logits is None:
            raise ValueError("hungarian loss needs class logits (num_classes > 1)")
        class_logits = output.class_logits.float()
        b, q, _ = class_logits.shape
        mask_logits = output.mask_logits.float().flatten(2)
        target_classes = labels.new_full((b, q), self.num_classes)
        bce_sum = mask_logits.new_zeros(())
        dice_sum = mask_logits.new_zeros(())
        num_masks = 0
        for i in range(b):
            ids, masks, valid = self._targets(labels[i])
            logits = mask_logits[i][:, valid]
            if ids.numel() > 0:
                rows, cols = self._match(logits, class_logits[i], ids, masks)
            else:  # nothing labelled: no query has a target, none is taught its class
                rows = cols = torch.zeros(0, dtype=torch.int64, device=logits.device)
                target_classes[i] = UNLABELLED
            # Even an image without targets keeps its mask logits in the graph (with zero
            # gradient): under DDP every parameter must take part in every process's loss.
            target_classes[i, rows] = ids[cols]
            matched, target = logits[rows], masks[cols]
            bce_sum = (
                bce_sum
                + F.binary_cross_entropy_with_logits(matched, target, reduction="none")
                .mean(1)
                .sum()
            )
            dice_sum = dice_sum + dice_loss(matched.sigmoid(), target).sum()
            num_masks += int(ids.numel())
        num_masks = max(num_masks, 1)
        ce = query_class_loss(class_logits, target_classes, self.ce_weight)
        bce, dice = bce_sum / num_masks, dice_sum / num_masks
        loss = ce + bce + dice + output.aux_loss
        return {
            "loss": loss,
            "loss_ce": ce,
            "loss_mask": bce,
            "loss_dice": dice,
            "aux_loss": output.aux_loss,
        }


def build_criterion(
    name: str = DEFAULT_LOSS,
    num_classes: int = 1,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Sequence[float] | None = None,
) -> nn.Module:
    """ "hungarian" or "semantic" for multi-class models; binary models (num_classes 1) always
    get BCE + dice (class_weights then holds [background, foreground])."""
    if name not in LOSSES:
        raise ValueError(f"loss {name!r} not in {LOSSES}")
    if num_classes == 1:
        return BinaryLoss(ignore_index, class_weights)
    if name == "semantic":
        return SemanticLoss(num_classes, ignore_index, class_weights)
    return HungarianLoss(num_classes, ignore_index, class_weights)
