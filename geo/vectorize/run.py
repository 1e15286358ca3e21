"""`vectorize`: any class raster (or several, as one mosaic) into polygons, checked
before any work (`check_vectorize`)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
from rasterio.errors import RasterioIOError

from geo.contracts.adapter import class_map_of
from geo.contracts.classes import CLASSES_TAG, IGNORE, MODEL_TAG, SCORE_BAND, ClassMap
from geo.errors import InputError
from geo.io.outputs import (
    check_output,
    check_unlocked,
    exclusive,
    make_folder,
    scene_date,
)
from geo.io.raster import check_exists, check_readable, decimated_shape, open_raster, read_failed
from geo.options import checked_once, flag
from geo.vectorize.classes import NOT_CLASS_IDS, rasters_class_map, warn_other_names
from geo.vectorize.config import SUFFIXES, VectorizeConfig
from geo.vectorize.mosaic import Mosaic, Part, build_mosaic
from geo.vectorize.polygons import polygon_batches, write_polygons

log = logging.getLogger(__name__)
CHECKED_SIDE = 2048  # the class raster's values are checked on a read of at most this side


@dataclass(frozen=True)
class VectorizePlan:
    """A checked vectorisation: the config, its classes, the output file, and the rasters to
    read: the class raster and score raster given, or the mosaic of several (its VRTs in a
    temporary folder that lives until `vectorize` has used the plan); `model`: the one that
    predicted a single class raster, where it says so (a mosaic's are per raster)."""

    config: VectorizeConfig
    class_map: ClassMap
    out: Path
    parts: tuple[Part, ...]
    mosaic: Mosaic | None = None
    folder: tempfile.TemporaryDirectory[str] | None = None
    model: str = ""


def _paths(config: VectorizeConfig) -> list[str]:
    return [*config.rasters, config.class_map or "", config.out, *(config.scores or [])]


def _usable(plan: VectorizePlan) -> bool:
    """A plan is used up once `vectorize` has removed its mosaic's temporary folder."""
    return plan.folder is None or Path(plan.folder.name).is_dir()


@checked_once(_paths, _usable)
def check_vectorize(config: VectorizeConfig) -> VectorizePlan:
    """Pre-flight check: one-band class rasters of whole class ids (integers, or floats such as
    QGIS's raster calculator writes), several as one mosaic (`geo.vectorize.mosaic`), the class
    map (`rasters_class_map` without one), a score raster on each one's grid, and an output
    file that may be written. Raises InputError naming the input."""
    rasters = [_check_raster(path, "class raster", integer=True) for path in config.rasters]
    if config.class_map is None:
        for path, raster in zip(config.rasters, rasters, strict=True):
            if raster.band == SCORE_BAND:  # its whole-number scores would pass for class ids
                raise InputError(f"{path}: a probability raster ({SCORE_BAND}); {NOT_CLASS_IDS}")
        class_map = rasters_class_map(config.rasters, rasters[0].classes)
    else:
        class_map = class_map_of(config.class_map)
        warn_other_names(config.rasters[0], rasters[0].classes, class_map)
    if config.class_map is not None or len(config.rasters) > 1:  # ids (predictions/* has more)
        for path in config.rasters:
            _check_class_ids(path, class_map)
    scores = config.scores or []
    if scores and len(scores) != len(config.rasters):
        raise InputError(
            f"{flag('scores')}: {len(scores)} score raster(s) for {len(config.rasters)} class "
            "raster(s); give one per class raster, in the same order"
        )
    for path, name, checked in zip(scores, config.rasters, rasters, strict=False):
        if _check_raster(path, "score raster").grid != checked.grid:
            raise InputError(
                f"{flag('scores')} {path}: not on the grid of {name} (same size, CRS and "
                "transform needed)"
            )
    out = check_output(config.out, into=False)
    if out.is_dir():
        raise InputError(f"{flag('out')} {config.out}: is a folder; give a file name")
    if out.exists() and not config.overwrite:
        raise InputError(f"{flag('out')} {config.out}: exists; pass --overwrite to replace it")
    check_unlocked(out, "polygon file")
    suffixes = SUFFIXES[config.output_format]
    if not out.name.lower().endswith(suffixes):
        if config.format is None:
            raise InputError(
                f"{flag('out')} {config.out}: give a file name ending in .gpkg (GeoPackage), or "
                ".parquet or .geoparquet (fiboa GeoParquet)"
            )
        raise InputError(
            f"{flag('out')} {config.out}: a {config.format} file ends in {suffixes[0]}"
        )
    if len(config.rasters) == 1:
        part = Part(config.rasters[0], next(iter(scores), None), (0, 0))  # URLs kept as given
        return VectorizePlan(config, class_map, out, (part,), model=rasters[0].model)
    folder = tempfile.TemporaryDirectory(prefix="convlora-geo-mosaic-")
    try:
        mosaic = build_mosaic(
            config.rasters, scores or None, Path(folder.name),
            with_classes=config.class_map is None,
        )  # fmt: skip
    except BaseException:
        folder.cleanup()
        raise
    return VectorizePlan(config, class_map, out, mosaic.parts, mosaic, folder)


class _Checked(NamedTuple):
    """A readable one-band raster: its grid (width, height, CRS, transform), band description,
    the model that predicted it ("" where it does not say) and the classes it names (its
    CLASSES_TAG, None where it names none)."""

    grid: tuple[Any, ...]
    band: str | None
    model: str
    classes: str | None


def _check_raster(path: str, what: str, integer: bool = False) -> _Checked:
    """A readable one-band raster (its first and last blocks read: a truncated file fails
    here); InputError otherwise."""
    check_exists(path, what)
    try:
        with open_raster(path) as src:
            count, dtype, band = src.count, src.dtypes[0], src.descriptions[0]
            tags = src.tags()
            model, classes = tags.get(MODEL_TAG, ""), tags.get(CLASSES_TAG)
            grid = (src.width, src.height, src.crs, tuple(src.transform))
            check_readable(src)
    except InputError:  # check_readable's: a file truncated or garbled
        raise
    except Exception:  # rasterio raises several error types
        raise InputError(f"{path}: not a raster GDAL can read") from None
    if count != 1:
        raise InputError(f"{path}: a {what} has one band, this one has {count}")
    if integer and not dtype.startswith(("int", "uint", "float")):
        raise InputError(f"{path}: a {what} holds class ids, not {dtype} values")
    return _Checked(grid, band, model, classes)


def _check_class_ids(path: str, class_map: ClassMap) -> None:
    """InputError when the class raster, read at most CHECKED_SIDE px a side, holds values that
    are no class id of the map (nodata, NaN and 255 aside): a probability raster, or another
    map's."""
    with open_raster(path) as src:
        shape = decimated_shape(src.width, src.height, CHECKED_SIDE)
        try:
            values = np.unique(src.read(1, out_shape=shape, masked=True).compressed())
        except RasterioIOError as exc:
            raise read_failed(path, exc) from exc
    values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    unknown = values[
        ((values < 0) | (values >= class_map.num_classes) | (values != np.round(values)))
        & (values != IGNORE)
    ]
    if unknown.size:
        shown = ", ".join(str(v) for v in unknown[:5]) + (", ..." if unknown.size > 5 else "")
        raise InputError(
            f"{path}: holds value(s) {shown}, but the class map's class ids are 0 to "
            f"{class_map.num_classes - 1}; a class raster holds class ids (predict's "
            "NAME_classes.tif, not NAME_probability.tif)"
        )


def vectorize(config: VectorizeConfig) -> dict[str, Any]:
    """Write the polygons of the class raster to `config.out`; returns the count per class."""
    plan = check_vectorize(config)
    frames = _frames(plan)
    dates = None
    if plan.mosaic is not None:
        frames = _with_sources(frames, plan.mosaic)
        dates = dict(zip(plan.mosaic.names, plan.mosaic.dates, strict=True))
        log.info("%d class rasters as one mosaic", len(plan.mosaic.names))
    parquet = config.output_format == "parquet"
    try:
        make_folder(plan.out.parent)
        with exclusive(plan.out, "polygon file", traceless=True):
            totals = write_polygons(
                frames, None if parquet else plan.out, plan.class_map.classes,
                timestamp=scene_date(plan.parts[0].classes),
                parquet=plan.out if parquet else None, dates=dates,
            )  # fmt: skip
    finally:  # the mosaic's VRTs and resampled copies: no longer needed, whatever happened
        if plan.folder is not None:
            plan.folder.cleanup()
    log.info("wrote %d polygons to %s", sum(totals.count.values()), plan.out)
    return {"out": str(plan.out), "format": config.output_format, "polygons": totals.count}


def _frames(plan: VectorizePlan) -> Iterator[gpd.GeoDataFrame]:
    """The polygons of each part of the plan, their ids counted from the first pixel of the
    whole mosaic (a mosaic's models are set by source, `_with_sources`)."""
    for part in plan.parts:
        try:
            yield from polygon_batches(
                part.classes, part.scores,
                plan.class_map.classes, min_area=plan.config.min_area,
                simplify=plan.config.simplify, source=Path(plan.config.rasters[0]).name,
                model=plan.model, first=part.offset, progress=True,
            )  # fmt: skip
        except RasterioIOError as exc:
            raise read_failed(_failed_input(plan.config, exc), exc) from exc


def _failed_input(config: VectorizeConfig, exc: RasterioIOError) -> str:
    """The input whose read failed: the one GDAL names (a mosaic's VRT names its source; of
    names inside one another, `old_probability.tif` and `probability.tif`, the longest), else
    the class raster, or all of them."""
    message = str(exc.__cause__ or exc)
    inputs = [*config.rasters, *(config.scores or [])]
    named = [p for p in inputs if p in message] or [p for p in inputs if Path(p).name in message]
    if named:
        return max(named, key=len)
    return config.rasters[0] if len(config.rasters) == 1 else ", ".join(config.rasters)


def _with_sources(frames: Iterator[gpd.GeoDataFrame], mosaic: Mosaic) -> Iterator[gpd.GeoDataFrame]:
    """Each polygon's `source`, the class raster of the mosaic it comes from, and `model`, the
    one that predicted that raster."""
    models = dict(zip(mosaic.names, mosaic.models, strict=True))
    for frame in frames:
        frame["source"] = mosaic.sources(frame)
        frame["model"] = frame["source"].map(lambda name: models.get(name) or None)
        yield frame
