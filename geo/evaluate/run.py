"""Metrics of a trained adapter on a labelled tile store, measured as prediction uses it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from convlora.checkpoint import load_adapter
from convlora.devices import autocast, resolve_device
from convlora.errors import ConvLoRAInputError
from convlora.metrics import ConfusionMatrix
from convlora.training.evaluation import summarize
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.evaluate.config import EvaluateConfig
from geo.evaluate.objects import ObjectScore, ReferencePolygons
from geo.finetune.dataset import TileDataset
from geo.io.units import pixel_metres
from geo.vectorize.objects import boundary_reach, label_objects


def check_compatible(store: StoreInfo, metadata: AdapterMetadata) -> None:
    """Refuse a store whose classes or bands differ from those the adapter was trained on."""
    names = [c.name for c in store.classes]
    trained = [c.name for c in metadata.classes]
    if names != trained:
        raise InputError(
            f"{store.path}: classes {names} differ from the model's {trained} "
            "(tile it with the model's class map)"
        )
    if store.bands != metadata.bands:
        raise InputError(
            f"{store.path}: bands {list(store.bands)} differ from the model's "
            f"{list(metadata.bands)} (tile it with --bands as for training)"
        )


def evaluate_on_store(config: EvaluateConfig) -> dict[str, Any]:
    """Per-class IoU, mIoU, F1 and pixel accuracy of a trained adapter on a labelled store, and
    object-level precision, recall, F1 and median IoU (`geo.evaluate.objects`) against the
    store's labels or the polygons of `config.reference`.

    The store's tiles are normalised with the adapter's statistics, as at prediction time.
    """
    store = StoreInfo.read(config.store)
    metadata = AdapterMetadata.read(config.model)
    check_compatible(store, metadata)
    split = config.split or "all"
    if sum(sum(store.class_pixels.get(s, ())) for s in _splits(split)) == 0:
        raise InputError(f"{config.store}: no labelled pixel in split {split!r}")
    reference = None if config.reference is None else ReferencePolygons(config.reference, store)
    try:
        device = resolve_device(config.device)
        model, _ = load_adapter(config.model, sam_checkpoint=config.sam_checkpoint, device=device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    dataset = TileDataset(store, split, augment=False, normalization=metadata.normalization)
    if len(dataset) == 0:
        raise InputError(f"{config.store}: no tiles in split {split!r}")
    scene = store.scenes[0]
    pixel_m = pixel_metres(
        None if scene.crs is None else CRS.from_wkt(scene.crs), Affine(*scene.transform[:6]),
        scene.height,
    )  # fmt: skip
    boundary_id, reach = boundary_reach(metadata.classes, pixel_m)
    matrix = ConfusionMatrix(len(metadata.classes), ignore_index=IGNORE)
    objects = ObjectScore()
    for predicted, labels, indexes in _predictions(model, dataset, config.batch_size, device):
        matrix.update(predicted, labels)
        for pred, label, index in zip(predicted, labels, indexes, strict=True):
            truth = (
                label_objects(label, boundary_id, reach)
                if reference is None
                else reference.objects(index)
            )
            found = label_objects(pred, boundary_id, reach)
            objects.add(truth, found, label != IGNORE)
    metrics = summarize(matrix, [c.name for c in metadata.classes])
    return {
        **metrics, "objects": objects.summary(), "split": split, "tiles": len(dataset),
        "store": str(config.store), "reference": config.reference or "store labels",
    }  # fmt: skip


@torch.no_grad()
def _predictions(
    model: Any, dataset: TileDataset, batch_size: int, device: torch.device
) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
    """Predicted classes, reference labels (255 where invalid) and store indexes, by batch."""
    model.eval()
    for batch in DataLoader(dataset, batch_size=batch_size):
        with autocast(device):
            proba = model.predict_proba(batch["image"].to(device))
        predicted = proba.float().argmax(dim=1).cpu().numpy().astype(np.uint8)
        labels = batch["label"].numpy().astype(np.uint8)
        yield predicted, labels, [int(i) for i in batch["index"]]


def _splits(split: str) -> tuple[str, ...]:
    return ("train", "val", "buffer") if split == "all" else (split,)
