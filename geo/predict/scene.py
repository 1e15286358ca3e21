"""A scene to predict: checked against the model's metadata, with its windows and output names."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
from rasterio.windows import Window

from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import ClassInfo
from geo.contracts.normalization import Normalization
from geo.errors import InputError
from geo.io.grid import default_overlap, overlap_problem, tile_size_problem
from geo.io.raster import (
    SceneInfo,
    bands_named,
    check_bands,
    check_has_data,
    covering_window,
    scene_info,
)
from geo.io.vector import aoi_in_scene, load_aoi
from geo.options import flag
from geo.predict.stitch import StitchPlan

log = logging.getLogger(__name__)

OUTPUTS = {
    "classes": "_classes.tif",
    "probability": "_probability.tif",
    "polygons": "_polygons.gpkg",
    "fiboa": "_polygons.parquet",
    "style": "_classes.qml",
    "quicklook": "_quicklook.png",
    "manifest": "_manifest.json",
}


@dataclass(frozen=True)
class AreaOfInterest:
    """The `--aoi` polygons, read once for every scene."""

    path: str
    frame: gpd.GeoDataFrame

    @classmethod
    def read(cls, path: str) -> AreaOfInterest:
        return cls(path, load_aoi(path))


@dataclass(frozen=True)
class SceneArea:
    """Where in a scene outputs are made: the `--aoi` file and its polygons in the scene's CRS
    (WKT, so that a scene travels to Dask workers as plain data)."""

    path: str
    wkt: str


@dataclass(frozen=True)
class Scene:
    """A scene checked against the model's metadata, with its window plan and output name;
    with an area of interest, the scene is cut to the area's extent and outputs are no data
    outside its polygons."""

    info: SceneInfo
    name: str  # the output files' stem
    metadata: AdapterMetadata
    plan: StitchPlan
    bands: tuple[int, ...]  # the scene's bands the model reads, in its input order
    area: SceneArea | None = None
    sas_tokens: bool = False  # a VRT whose sources' SAS tokens are renewed before it is read

    @property
    def normalization(self) -> Normalization:
        return self.metadata.normalization

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return self.metadata.classes


def output_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """The files a prediction named `name` writes into `out_dir`, by kind."""
    return {kind: Path(out_dir) / f"{name}{suffix}" for kind, suffix in OUTPUTS.items()}


def output_names(images: Sequence[str]) -> list[str]:
    """Output stems for scenes: the file stem, plus a short hash of the full path for scenes
    whose stems collide (a/x.tif and b/x.tif), so no prediction overwrites another."""
    stems = [Path(p).stem for p in images]
    return [
        s if stems.count(s) == 1 else f"{s}_{hashlib.sha256(p.encode()).hexdigest()[:8]}"
        for s, p in zip(stems, images, strict=True)
    ]


def window_grid(
    metadata: AdapterMetadata, tile_size: int | None, overlap: int | None
) -> tuple[int, int]:
    """Window side and overlap: the training tile grid unless overridden (InputError if bad)."""
    size = metadata.tile_size if tile_size is None else tile_size
    problem = tile_size_problem(size)
    if problem:
        raise InputError(f"{flag('tile_size')} {size}: {problem}")
    if overlap is None:
        overlap = metadata.overlap if size == metadata.tile_size else default_overlap(size)
    problem = overlap_problem(overlap, size)
    if problem:
        raise InputError(f"{flag('overlap')} {overlap}: {problem}")
    return size, overlap


def warn_scale(metadata: AdapterMetadata, size: int) -> None:
    """Warn when windows of `size` px show the model another scale than in training."""
    if size != metadata.tile_size:
        log.warning(
            "%s %d: the model was trained on %d px tiles, each resized to %d px; %d px windows "
            "are seen at %.2fx the training scale",
            flag("tile_size"), size, metadata.tile_size, metadata.image_size, size,
            metadata.tile_size / size,
        )  # fmt: skip


def prepare_scene(
    image: str,
    metadata: AdapterMetadata,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    blend: bool = True,
    name: str | None = None,
    aoi: AreaOfInterest | None = None,
) -> Scene:
    """Check a scene against the model (bands, data) and plan its windows, over the part of
    it that `aoi` covers when given; InputError naming what is wrong (OutsideAreaError when
    the area misses the scene)."""
    info = scene_info(image)
    size, overlap = window_grid(metadata, tile_size, overlap)
    area = None
    if aoi is not None:
        polygons = aoi_in_scene(aoi.frame, aoi.path, info)
        whole = StitchPlan(info.width, info.height, size, overlap, blend)
        info = info.cut(window_around(whole, covering_window(info, polygons)))
        area = SceneArea(aoi.path, polygons.wkt)
    bands = bands_by_name(info, metadata) or list(metadata.bands)
    try:
        check_bands(info, bands)
    except InputError as exc:
        raise InputError(f"{exc}; the model reads bands {bands}: give a scene with them") from None
    check_has_data(info, bands)
    plan = StitchPlan(info.width, info.height, size, overlap, blend)
    return Scene(info, name or Path(image).stem, metadata, plan, tuple(bands), area)


def window_around(whole: StitchPlan, inner: Window) -> Window:
    """The part of the scene to predict for outputs over `inner`: from the first window of
    the whole scene's grid (`whole`: windows every tile size - overlap px, each dropping its
    margin at its edges) that reaches `inner` to where the last one that reaches it ends (or the
    scene's edges), so that every pixel of `inner` is blended from exactly the windows a
    prediction of the whole scene gives it."""
    step, kept = whole.grid.stride, whole.tile_size - 2 * whole.margin

    def span(start: int, stop: int, length: int) -> tuple[int, int]:
        first = max(0, ((start - kept) // step + 1) * step)
        return first, min(length, stop + kept)

    c0, c1 = span(int(inner.col_off), int(inner.col_off + inner.width), whole.width)
    r0, r1 = span(int(inner.row_off), int(inner.row_off + inner.height), whole.height)
    return Window(c0, r0, c1 - c0, r1 - r0)


def bands_by_name(info: SceneInfo, metadata: AdapterMetadata) -> list[int] | None:
    """The scene's bands holding the training bands by name (GDAL descriptions, case and spaces
    aside), when every training band has a name found exactly once in the scene and they lie in
    another order than in training (logged); else None: bands are taken by number."""
    if len(metadata.band_names) != len(metadata.bands):
        return None
    bands = bands_named(metadata.band_names, info.band_names)
    if bands is None or tuple(bands) == metadata.bands:
        return None
    log.info(
        "%s: bands read by name, in training's order: %s",
        info.path,
        ", ".join(f"{n} = band {b}" for n, b in zip(metadata.band_names, bands, strict=True)),
    )
    return bands
