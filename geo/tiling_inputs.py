"""Tiling inputs, checked before any work starts: settings, scenes, bands, labels and the output.

`check_tiling` is the pre-flight check the CLI runs before it starts a flow, and the first thing
`geo.tiling.tile_scenes` does: it reads metadata, the first and last blocks of each scene, a few
windows to find data, and the label file, and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from geo import split as splitting
from geo import stats
from geo.classes import UNMAPPED_CHOICES, ClassMap, load_class_map
from geo.errors import InputError
from geo.hashing import fingerprint, input_record
from geo.labels import (
    RasterLabels,
    VectorLabels,
    aoi_in_scene,
    is_vector,
    load_aoi,
    prepare_raster_labels,
    prepare_vector_labels,
)
from geo.paths import check_output
from geo.raster import SceneInfo, check_bands, scene_info
from geo.store import FORMAT, read_attrs
from geo.windows import MAX_TILE_SIZE

log = logging.getLogger(__name__)

ALGORITHM = {  # part of the fingerprint: bump "version" when tiling output changes
    "version": 1,
    "stats": [stats.SAMPLE_WINDOW, stats.WINDOWS_PER_SCENE, stats.TOTAL_PIXELS, stats.MIN_PIXELS],
    "split": [list(splitting.BLOCK_SIDES), splitting.MIN_BLOCKS, splitting.ATTEMPTS],
}
LabelSource = VectorLabels | RasterLabels


@dataclass
class TilingRequest:
    """Validated tiling inputs; `reuse` is True when `out` already holds this very store."""

    paths: dict[str, list[str]]  # "image", "labels", "aoi", "class_map" -> local or GDAL paths
    out: Path
    cmap: ClassMap
    scenes: list[SceneInfo]
    bands: list[int]
    sources: list[LabelSource]
    settings: dict[str, Any]
    reuse: bool = field(default=False)

    @cached_property
    def inputs(self) -> list[dict[str, Any]]:
        """Path and sha256 of every input, in a fixed order."""
        return [input_record(p, role) for role, paths in self.paths.items() for p in paths]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.inputs, self.settings)


def check_tiling(
    images: Sequence[str],
    labels: Sequence[str],
    class_map: str | Path | ClassMap | list | dict,
    out: str | Path,
    *,
    tile_size: int = 1024,
    overlap: int = 128,
    bands: list[int] | None = None,
    label_field: str | None = None,
    aoi: str | None = None,
    val_fraction: float = 0.2,
    all_touched: bool = False,
    unmapped: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> TilingRequest:
    """Check everything `tile_scenes` needs (same arguments) and return it validated.

    Raises InputError naming the input and the problem; writes nothing. Inputs are hashed only
    when `out` exists (to tell a store of the same inputs, reused, from anything else, refused
    unless `overwrite`).
    """
    _check_settings(images, labels, tile_size, overlap, val_fraction, unmapped)
    cmap = load_class_map(class_map).with_unmapped(unmapped)
    scenes = [scene_info(str(p)) for p in images]
    band_list = list(bands) if bands else list(range(1, scenes[0].count + 1))
    for scene in scenes:
        check_bands(scene, band_list)
    _check_crs(scenes)
    for scene in scenes:
        stats.check_has_data(scene, band_list)
    sources = _prepare_labels(scenes, [str(p) for p in labels], cmap, label_field, aoi, all_touched)
    target = check_output(out, into=False)
    paths = {"image": [str(p) for p in images], "labels": [str(p) for p in labels]}
    paths |= {"aoi": [str(aoi)]} if aoi else {}
    paths |= {"class_map": [str(class_map)]} if isinstance(class_map, str | Path) else {}
    settings = {
        "format": FORMAT,
        "tile_size": tile_size,
        "overlap": overlap,
        "bands": band_list,
        "label_field": label_field,
        "all_touched": all_touched,
        "val_fraction": val_fraction,
        "seed": seed,
        "class_map": cmap.to_dict(),
        "algorithm": ALGORITHM,
    }
    request = TilingRequest(paths, target, cmap, scenes, band_list, sources, settings)
    if target.exists():
        existing = read_attrs(target)
        request.reuse = bool(existing) and existing.get("fingerprint") == request.fingerprint
        if not request.reuse and not overwrite:
            what = "a tile store of other inputs or settings" if existing else "something else"
            raise InputError(f"{out}: already holds {what}; choose another --out or pass overwrite")
    return request


def _check_settings(
    images: Sequence[str],
    labels: Sequence[str],
    tile_size: int,
    overlap: int,
    val_fraction: float,
    unmapped: str | None,
) -> None:
    if not images:
        raise InputError("give at least one image")
    if len(labels) not in (1, len(images)):
        raise InputError(
            f"got {len(labels)} label inputs for {len(images)} images: give one vector file "
            "for all scenes, or one label raster per image"
        )
    if tile_size < 16 or tile_size % 16:
        raise InputError(f"tile size {tile_size} must be a positive multiple of 16")
    if tile_size > MAX_TILE_SIZE:
        raise InputError(f"tile size {tile_size} is too large (at most {MAX_TILE_SIZE})")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise InputError(f"overlap {overlap} must be >= 0 and less than half the tile size")
    if not 0 <= val_fraction < 1:
        raise InputError(f"validation fraction {val_fraction} must be in [0, 1)")
    if unmapped not in (None, *UNMAPPED_CHOICES):
        raise InputError(f"unmapped must be 'ignore' or 'background', not {unmapped!r}")


def _check_crs(scenes: list[SceneInfo]) -> None:
    without = [s.path for s in scenes if s.crs is None]
    if without and len(without) < len(scenes):
        raise InputError(
            f"{without[0]}: has no CRS while other scenes have one; tile them into separate stores"
        )
    if without:
        log.warning(
            "%d scene(s) have no CRS (e.g. %s): their label rasters are paired pixel for pixel",
            len(without),
            without[0],
        )


def _prepare_labels(
    scenes: list[SceneInfo],
    labels: list[str],
    cmap: ClassMap,
    label_field: str | None,
    aoi: str | None,
    all_touched: bool,
) -> list[LabelSource]:
    """Validate the labels (and AOI) and build one label source per scene."""
    aoi_frame = load_aoi(aoi) if aoi else None
    areas = [aoi_in_scene(aoi_frame, aoi, s) if aoi_frame is not None else None for s in scenes]
    vector = [is_vector(p) for p in labels]
    if len(labels) == 1 and vector[0]:
        return prepare_vector_labels(labels[0], scenes, cmap, label_field, areas, all_touched)
    if any(vector):
        bad = labels[vector.index(True)]
        raise InputError(
            f"{bad}: give one vector file for all scenes, or one label raster per image"
        )
    if len(labels) != len(scenes):
        raise InputError(f"{labels[0]}: a label raster covers one scene; give one per image")
    if label_field is not None:
        raise InputError(f"label field {label_field!r} applies to vector labels, not label rasters")
    return [
        prepare_raster_labels(p, s, cmap, a) for p, s, a in zip(labels, scenes, areas, strict=True)
    ]
