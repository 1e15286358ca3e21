"""Confusion-matrix segmentation metrics accumulated over a data set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from convlora.config import IGNORE_INDEX


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionMatrix:
    """Accumulates a K x K matrix (rows: reference, columns: prediction), ignoring `ignore_index`.

    `compute()` gives per-class IoU and F1 (None for a class absent from both reference and
    prediction), their means over the defined classes, and pixel accuracy.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Add predicted and reference class maps of the same shape."""
        pred, target = _to_numpy(pred).ravel(), _to_numpy(target).ravel()
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in size")
        keep = target != self.ignore_index
        pred, target = pred[keep].astype(np.int64), target[keep].astype(np.int64)
        k = self.num_classes
        both = np.concatenate([pred, target])
        if both.size and (both.min() < 0 or both.max() >= k):
            raise ValueError(f"class ids must lie in 0..{k - 1} (or be {self.ignore_index})")
        self.matrix += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, Any]:
        """per_class_iou, miou, per_class_f1, mean_f1, pixel_accuracy."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        ref, predicted = m.sum(1), m.sum(0)
        union = ref + predicted - tp
        defined = union > 0
        iou = np.where(defined, tp / np.maximum(union, 1), np.nan)
        f1 = np.where(defined, 2 * tp / np.maximum(ref + predicted, 1), np.nan)
        total = m.sum()

        def listed(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "per_class_iou": listed(iou),
            "miou": float(np.nanmean(iou)) if defined.any() else 0.0,
            "per_class_f1": listed(f1),
            "mean_f1": float(np.nanmean(f1)) if defined.any() else 0.0,
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
        }
