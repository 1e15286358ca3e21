"""Metrics of a trained adapter on a labelled tile store, measured exactly as prediction uses it.

Each scene of the store is predicted with the prediction code itself (the adapter's tile size
and overlap, the same windows, resizing, normalisation and blending), reading the scene's pixels
back from the store's tiles; the blended class of every pixel that a tile of the chosen split
covers is compared with its label. Predicting a store's scene file and scoring its class raster
against the store's labels therefore gives the same pixel metrics. Objects (`geo.evaluate.objects`)
are matched per tile of the split, as Fields of The World does per chip, on the same predictions.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from convlora.devices import resolve_device
from convlora.errors import ConvLoRAInputError
from convlora.metrics import ConfusionMatrix
from convlora.model import SegmentationSAM
from convlora.training.evaluation import summarize
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import IGNORE
from geo.contracts.metrics import map_accuracies, one_class_warning
from geo.contracts.tile_store import SPLITS, StoreInfo
from geo.errors import InputError
from geo.evaluate.config import EvaluateConfig
from geo.evaluate.objects import ObjectScore, ReferencePolygons
from geo.evaluate.store_scene import StoreScene
from geo.io.units import pixel_metres
from geo.options import flag
from geo.predict import batch_size_for
from geo.predict.model import load_model
from geo.predict.rows import predict_rows
from geo.predict.scene import Scene, warn_scale, window_grid
from geo.predict.stitch import RowBand, StitchPlan
from geo.vectorize.objects import boundary_reach, label_objects

log = logging.getLogger(__name__)


def check_compatible(store: StoreInfo, metadata: AdapterMetadata) -> None:
    """Refuse a store whose classes or bands differ from those the adapter was trained on."""
    names = [c.name for c in store.classes]
    trained = [c.name for c in metadata.classes]
    if names != trained:
        given = (
            f"{metadata.path.parent} (the model's own)"
            if metadata.class_map is not None
            else "the model's class map file or the tile store it was trained on"
        )
        raise InputError(
            f"{store.path}: classes {names} differ from the model's {trained} "
            f"(tile it with {flag('class_map')} {given})"
        )
    if store.bands != metadata.bands:
        raise InputError(
            f"{store.path}: bands {list(store.bands)} differ from the model's "
            f"{list(metadata.bands)} (tile it with --bands as for training)"
        )


def evaluate_on_store(config: EvaluateConfig) -> dict[str, Any]:
    """Per-class IoU, mIoU, F1 and pixel accuracy of a trained adapter on a labelled store (all
    its labelled tiles unless a split is named), and object-level precision, recall, F1 and
    median IoU against the store's labels or the polygons of `config.reference`."""
    store = StoreInfo.read(config.store)
    split = config.split or "all"
    names = ("train", "val", "buffer") if split == "all" else (split,)
    if sum(sum(store.class_pixels.get(s, ())) for s in names) == 0:
        raise InputError(f"{config.store}: no labelled pixel in split {split!r}")
    metadata = AdapterMetadata.read(config.model)
    check_compatible(store, metadata)
    size, overlap = window_grid(metadata, config.tile_size, config.overlap)
    warn_scale(metadata, size)
    reference = None if config.reference is None else ReferencePolygons(config.reference, store)
    try:
        device = resolve_device(config.device)
        model, _ = load_model(config.model, config.sam_checkpoint, device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    matrix = ConfusionMatrix(len(metadata.classes))
    objects = ObjectScore()
    tiles = 0
    for index in range(len(store.scenes)):
        source = StoreScene(store, index, SPLITS[split])
        if source.has_split_tiles:
            tiles += int(source.chosen.sum())
            _score_scene(
                source, metadata, model, (size, overlap), config, device, matrix, objects,
                reference,
            )  # fmt: skip
        source.close()
    class_names = [c.name for c in metadata.classes]
    metrics = {**summarize(matrix, class_names), **map_accuracies(matrix.matrix, class_names)}
    weighted = bool((metadata.training.get("train") or {}).get("class_weights"))
    warning = one_class_warning(metrics, weighted=weighted, pixels="labelled")
    if warning:
        log.warning("%s: %s", config.model, warning)
    return {
        **metrics, "objects": objects.summary(), "split": split, "tiles": tiles,
        "store": str(config.store), "reference": config.reference or "store labels",
        "warnings": [warning] if warning else [],
    }  # fmt: skip


def _score_scene(
    source: StoreScene,
    metadata: AdapterMetadata,
    model: SegmentationSAM,
    grid: tuple[int, int],
    config: EvaluateConfig,
    device: Any,
    matrix: ConfusionMatrix,
    objects: ObjectScore,
    reference: ReferencePolygons | None,
) -> None:
    """Predict one scene as prediction would, score its pixels, and its objects tile by tile,
    on each tile's core (the part of the scene that is its own: no object is counted twice
    where tiles overlap), as soon as the rows of a tile are final (a rolling buffer of
    predicted rows)."""
    info, record = source.info(), source.record
    crs = None if record.crs is None else CRS.from_wkt(record.crs)
    boundary_id, reach = boundary_reach(
        metadata.classes, pixel_metres(crs, Affine(*record.transform[:6]), record.height)
    )
    plan = StitchPlan(info.width, info.height, *grid)
    scene = Scene(info, info.path, metadata, plan, metadata.bands)
    pending = sorted((int(k) for k in np.flatnonzero(source.chosen)), key=lambda k: source.row1[k])
    kept_top, kept = 0, np.empty((0, info.width), dtype=np.uint8)
    rows = predict_rows(
        scene, model, RowBand(plan, len(metadata.classes)),
        batch_size=batch_size_for(config.batch_size, model, scene, device), device=device,
        source=source,
    )  # fmt: skip
    with closing(rows):
        for _, top, probs, valid in rows:
            predicted = probs.argmax(axis=0).astype(np.uint8)
            labels = source.labels(top, probs.shape[1])
            labels[~valid] = IGNORE
            matrix.update(predicted, labels)
            kept = np.concatenate([kept, predicted])
            released = top + probs.shape[1]
            while pending and source.row1[pending[0]] <= released:
                k = pending.pop(0)
                h, w = source.core_shape[k]  # the tiles' cores cover the scene once
                top_k, left_k = source.row0[k] - kept_top, source.col0[k]
                found = kept[top_k : top_k + h, left_k : left_k + w]
                truth_classes = source.tile_labels(k)[:h, :w]
                truth = (
                    label_objects(truth_classes, boundary_id, reach)
                    if reference is None
                    else reference.objects(int(source.tiles[k]))[:h, :w]
                )
                objects.add(
                    truth, label_objects(found, boundary_id, reach), truth_classes != IGNORE
                )
            drop = (min(source.row0[k] for k in pending) if pending else released) - kept_top
            kept, kept_top = kept[max(drop, 0) :], kept_top + max(drop, 0)
