"""Metrics of a trained adapter on a labelled tile store, measured exactly as prediction uses it.

Each scene of the store is predicted with the prediction code itself (the adapter's tile size
and overlap, the same windows, resizing, normalisation and blending), reading the scene's pixels
back from the store's tiles; the blended class of every pixel that a tile of the chosen split
covers is compared with its label. Predicting a store's scene file and scoring its class raster
against the store's labels therefore gives the same numbers.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any

from convlora.devices import resolve_device
from convlora.errors import ConvLoRAInputError
from convlora.metrics import ConfusionMatrix
from convlora.training.evaluation import summarize
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import SPLITS, StoreInfo
from geo.errors import InputError
from geo.evaluate.config import EvaluateConfig
from geo.evaluate.store_scene import StoreScene
from geo.predict import DEFAULT_BATCH
from geo.predict.model import load_model
from geo.predict.rows import predict_rows
from geo.predict.scene import Scene, warn_scale, window_grid
from geo.predict.stitch import RowBand, StitchPlan

log = logging.getLogger(__name__)


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
    """Per-class IoU, mIoU, F1 and pixel accuracy of a trained adapter on a labelled store
    (all its labelled tiles unless a split is named)."""
    store = StoreInfo.read(config.store)
    metadata = AdapterMetadata.read(config.model)
    check_compatible(store, metadata)
    split = config.split or "all"
    names = ("train", "val", "buffer") if split == "all" else (split,)
    if sum(sum(store.class_pixels.get(s, ())) for s in names) == 0:
        raise InputError(f"{config.store}: no labelled pixel in split {split!r}")
    size, overlap = window_grid(metadata, config.tile_size, config.overlap)
    warn_scale(metadata, size)
    try:
        device = resolve_device(config.device)
        model, _ = load_model(config.model, config.sam_checkpoint, device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    matrix = ConfusionMatrix(len(metadata.classes))
    tiles = 0
    for index in range(len(store.scenes)):
        source = StoreScene(store, index, SPLITS[split])
        if not source.has_split_tiles:
            continue
        tiles += int(source.chosen.sum())
        info = source.info()
        plan = StitchPlan(info.width, info.height, size, overlap)
        scene = Scene(info, info.path, metadata, plan)
        rows = predict_rows(
            scene, model, RowBand(plan, len(metadata.classes)),
            batch_size=config.batch_size or DEFAULT_BATCH, device=device, source=source,
        )  # fmt: skip
        with closing(rows):
            for _, top, probs, valid in rows:
                labels = source.labels(top, probs.shape[1])
                labels[~valid] = IGNORE
                matrix.update(probs.argmax(axis=0), labels)
        source.close()
    metrics = summarize(matrix, [c.name for c in metadata.classes])
    return {**metrics, "split": split, "tiles": tiles, "store": str(config.store)}
