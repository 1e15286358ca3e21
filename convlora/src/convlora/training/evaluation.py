"""Validation metrics: per-class IoU, mIoU, F1, pixel accuracy at label resolution; 255 ignored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset

from convlora.config import IGNORE_INDEX
from convlora.devices import autocast
from convlora.metrics import ConfusionMatrix
from convlora.training.data import Item, ItemDataset
from convlora.training.distributed import DistInfo, sum_across


class ProbabilityModel(Protocol):
    """What evaluation needs of a model (a SegmentationSAM, or any module like it)."""

    training: bool

    @property
    def num_outputs(self) -> int: ...

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@torch.no_grad()
def confusion(
    model: ProbabilityModel,
    dataset: ItemDataset,
    num_classes: int,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
) -> ConfusionMatrix:
    """Confusion matrix of the `predict_proba` argmax over `dataset` (or its `indices`)."""
    device = torch.device(device)
    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    items = list(range(len(dataset))) if indices is None else list(indices)
    if not items:
        return matrix
    was_training = model.training
    model.eval()
    loader = DataLoader(cast(Dataset[Item], dataset), batch_size=batch_size, sampler=items)
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        with autocast(device):
            proba = model.predict_proba(images)
        pred = proba.float().argmax(dim=1).cpu()
        target = batch["label"].long()
        if "valid" in batch:
            target = torch.where(batch["valid"].bool(), target, IGNORE_INDEX)
        matrix.update(pred, target)
    model.train(was_training)
    return matrix


def summarize(matrix: ConfusionMatrix, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics with the names used everywhere (metrics.jsonl, `evaluate --json`, the flows).

    Per-class values are keyed by class name; an undefined value (a class absent from both the
    labels and the predictions) is None and left out of the means. `predicted_share` is each
    class's share of the predicted pixels (a model that predicts one class everywhere shows it).
    """
    stats = matrix.compute()
    iou = [_number(v) for v in stats["per_class_iou"]]
    f1 = [_number(v) for v in stats["per_class_f1"]]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    if len(names) != len(iou):
        names = [str(i) for i in range(len(iou))]
    counts = _counts(matrix)
    predicted = counts.sum(dim=0).double()
    shares = (predicted / predicted.sum().clamp_min(1)).tolist()
    return {
        "miou": _number(stats["miou"]),
        "f1": _number(stats["mean_f1"]),
        "pixel_accuracy": _number(stats["pixel_accuracy"]),
        "per_class_iou": dict(zip(names, iou, strict=True)),
        "per_class_f1": dict(zip(names, f1, strict=True)),
        "predicted_share": dict(zip(names, [round(v, 6) for v in shares], strict=True)),
        "pixels": int(counts.sum()),
    }


def evaluate(
    model: ProbabilityModel,
    dataset: ItemDataset,
    *,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of `model` (with `predict_proba` and `num_outputs`) on a labelled dataset."""
    matrix = confusion(model, dataset, model.num_outputs, batch_size=batch_size, device=device)
    return summarize(matrix, class_names)


def evaluate_distributed(
    model: ProbabilityModel,
    dataset: ItemDataset,
    info: DistInfo,
    *,
    batch_size: int,
    device: torch.device,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`evaluate` with the items shared out over the processes; every process gets the result."""
    indices = range(info.rank, len(dataset), info.world_size)
    matrix = confusion(
        model, dataset, model.num_outputs, indices=indices, batch_size=batch_size, device=device
    )
    if info.enabled:
        counts = torch.as_tensor(_counts(matrix), dtype=torch.int64).to(device)
        _set_counts(matrix, sum_across(counts, info).cpu())
    return summarize(matrix, class_names)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _counts(matrix: ConfusionMatrix) -> torch.Tensor:
    return torch.as_tensor(matrix.matrix)


def _set_counts(matrix: ConfusionMatrix, counts: torch.Tensor) -> None:
    matrix.matrix = counts.cpu().numpy().astype(matrix.matrix.dtype)
