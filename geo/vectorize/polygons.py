"""Polygons from a class raster, GIS-ready: one per object (see `geo.vectorize.regions`; with a
boundary class, touching objects of one class stay apart), simplified as a coverage (shared edges
between neighbours stay shared), filtered by area in m², measured in metres, with a stable id;
streamed in batches into a GeoPackage with a QGIS style and, optionally, fiboa GeoParquet.
A raster without a CRS is measured in pixels instead, and its columns say so (`area_px`,
`perimeter_px`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from convlora.files import temporary_path
from geo.contracts.classes import ClassInfo
from geo.errors import NoSpaceError
from geo.io.outputs import out_of_room, writing
from geo.io.progress import Progress
from geo.io.raster import open_raster, placed_transform
from geo.io.styles import add_gpkg_style, class_categories
from geo.io.units import metres_per_unit
from geo.io.vector import EPOCH, GPKG_OPTIONS
from geo.options import flag
from geo.vectorize.fiboa import FiboaWriter
from geo.vectorize.objects import boundary_reach
from geo.vectorize.regions import BATCH_OBJECTS, Batch, regions

LAYER = "polygons"
MIN_AREA_PIXELS = 4  # the default smallest object: specks of fewer pixels are noise
SIMPLIFY_M = 2.0  # the default simplification tolerance, at most one pixel
TEXT_COLUMNS = ("id", "class_name", "source", "model")  # text even in an empty first batch
log = logging.getLogger(__name__)


def default_min_area(pixel_m: float) -> float:
    """The default `min_area`: MIN_AREA_PIXELS pixels of `pixel_m` metres (1 m² at 0.5 m,
    400 m² at 10 m, 3,600 m² at 30 m; in pixels without a CRS, where a pixel counts as 1 m),
    so that small objects of fine imagery (buildings, trees) are kept whatever the resolution."""
    return MIN_AREA_PIXELS * pixel_m**2


def default_simplify(pixel_m: float) -> float:
    """The default `simplify` tolerance: SIMPLIFY_M metres, or one pixel where pixels are finer
    (0.5 m at 0.5 m), so fine imagery is not simplified by several pixels (2 m moved the
    outlines of a 0.5 m raster by up to 3 pixels). A tolerance under 0.7 pixels moves nothing,
    so outlines of 10 and 30 m rasters keep their pixel steps: one pixel there made `vectorize`
    of the 8x8 FTW mosaic 2.6 times slower with its boundary class (3.95 s against 1.54 s, 40 %
    fewer vertices) and 17 times slower with the boundaries as an ordinary class (136 s against
    8 s), a network object touching every field, whose edges with objects of other batches are
    kept pixel by pixel."""
    return min(SIMPLIFY_M, pixel_m)


def measure_columns(georeferenced: bool) -> tuple[str, str]:
    """The names of the area and perimeter columns: in m² and m, or in pixels (pixel areas and
    pixel sides) for a raster without a CRS."""
    return ("area_m2", "perimeter_m") if georeferenced else ("area_px", "perimeter_px")


def polygon_batches(
    classes_path: str | Path,
    scores_path: str | Path | None,
    classes: Sequence[ClassInfo],
    *,
    min_area: float | None = None,
    simplify: float | None = None,
    source: str = "",
    model: str = "",
    first: tuple[int, int] = (0, 0),
    band_rows: int = 512,
    batch_objects: int = BATCH_OBJECTS,
    progress: bool = False,
) -> Iterator[gpd.GeoDataFrame]:
    """Polygons of every object of the class raster, in batches, on the raster's CRS (with
    `progress`, rows read shown as a bar on a terminal, else a line every 30 s).

    Columns: id (row-column of the object's first pixel in scan order, plus `first`, where the
    raster's first pixel lies in a larger one: stable for a raster),
    class_id, class_name, score (mean winning-class probability 0..1; empty without a score
    raster), area_m2, perimeter_m, source, model (empty where not known). Objects smaller than
    `min_area` m² (default: `default_min_area`) are dropped; `simplify` is a tolerance in
    metres (default: `default_simplify`) for a coverage simplification that keeps shared
    edges shared. Without a CRS, metres are pixels: the columns are area_px and perimeter_px,
    `min_area` and `simplify` are in pixels. A class marked `boundary` in `classes` is given
    back to the objects it outlines. Memory holds a few bands of rows and one batch (see
    `geo.vectorize.regions`).
    """
    with open_raster(str(classes_path)) as src:
        transform, crs, height = placed_transform(src.transform, src.crs), src.crs, src.height
    if crs is None:
        log.warning(
            "%s has no CRS: polygons are in its pixel grid's coordinates (where QGIS shows "
            "it: x = column, y = -row), their areas and perimeters (area_px, perimeter_px), "
            "%s and %s in pixels",
            source or classes_path, flag("min_area"), flag("simplify"),
        )  # fmt: skip
    unit_m = metres_per_unit(crs, transform, height)
    pixel_side_m = np.sqrt(abs(transform.determinant)) * unit_m
    if min_area is None:
        min_area = default_min_area(pixel_side_m)
    if simplify is None:
        simplify = default_simplify(pixel_side_m)
    boundary_id, reach = boundary_reach(classes, pixel_side_m)
    grid = _Grid(transform, crs, unit_m, pixel_side_m, {c.id: c.name for c in classes})
    what = f"vectorising {source or Path(str(classes_path)).name}"
    with Progress(height, what, "row", enabled=progress) as bar:
        for batch in regions(
            classes_path, scores_path, boundary_id=boundary_id, reach=reach,
            band_rows=band_rows, batch_objects=batch_objects, rows_read=bar.update,
        ):  # fmt: skip
            yield grid.frame(batch, min_area, simplify, source, model, first)


def polygonize(
    classes_path: str | Path,
    scores_path: str | Path | None,
    classes: Sequence[ClassInfo],
    **options: object,
) -> gpd.GeoDataFrame:
    """All the polygons of `polygon_batches` in one frame (for rasters of modest size)."""
    frames = list(polygon_batches(classes_path, scores_path, classes, **options))  # type: ignore[arg-type]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class _Grid:
    """What turns a batch of objects in pixel coordinates into measured polygons."""

    transform: object
    crs: object
    unit_m: float
    pixel_side_m: float
    names: dict[int, str]

    def frame(
        self,
        batch: Batch,
        min_area: float,
        simplify: float,
        source: str,
        model: str,
        first: tuple[int, int] = (0, 0),
    ) -> gpd.GeoDataFrame:
        kept = [r for r in batch.regions if r.pixels * self.pixel_side_m**2 >= min_area]
        geoms = np.array([r.geometry for r in kept], dtype=object)
        tolerance = simplify / self.pixel_side_m
        # Coverage simplification (Visvalingam-Whyatt) drops vertices whose triangle is under
        # tolerance² px²; a pixel outline's corners have 0.5 px², so below sqrt(0.5) px nothing
        # moves. The pixels of other objects touching the batch join the coverage, each as four
        # triangles meeting at its centre: every pixel corner along an edge shared with them is
        # then a node, so that edge stays as it is on both sides, whichever batch simplifies
        # the neighbour.
        if tolerance >= np.sqrt(0.5) and len(kept):
            # Vertices at every pixel corner make shared edges identical, as the coverage needs.
            dense = shapely.transform(shapely.segmentize(geoms, 1.0), np.round)
            coverage = np.concatenate([dense, _pinned(batch.context)])
            geoms = shapely.coverage_simplify(coverage, tolerance)[: len(kept)]
        a, b, c, d, e, f = self.transform[:6]  # type: ignore[index]
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c,
                                               d * xy[:, 0] + e * xy[:, 1] + f])
        )  # fmt: skip
        scores = [np.nan if r.score_sum is None else r.score_sum / (255.0 * r.pixels) for r in kept]
        frame = gpd.GeoDataFrame(
            {
                "id": [f"{r.first[0] + first[0]}-{r.first[1] + first[1]}" for r in kept],
                "class_id": np.array([r.class_id for r in kept], dtype=np.int32),
                "class_name": [self.names.get(r.class_id, str(r.class_id)) for r in kept],
                "score": np.array(scores, dtype=np.float64).round(4),
                "source": [source] * len(kept),
                "model": [model or None] * len(kept),  # NULL: a raster of no known model
            },
            geometry=gpd.GeoSeries(geoms, crs=self.crs),
        )
        area, perimeter = _measure(frame.geometry, self.unit_m)
        area_column, perimeter_column = measure_columns(self.crs is not None)
        frame.insert(4, area_column, area.round(2))
        frame.insert(5, perimeter_column, perimeter.round(2))
        return frame[area >= min_area]  # as simplified too: no polygon under --min-area


def _dated(
    frame: gpd.GeoDataFrame, timestamp: str | None, dates: Mapping[str, str | None] | None
) -> gpd.GeoDataFrame:
    """`frame` with the `date` of its scene after `source` (per source where `dates` are given;
    empty where a scene records none), so that a layer of many scenes can be filtered by date."""
    values = [dates.get(s) for s in frame["source"]] if dates else [timestamp] * len(frame)
    column = pd.to_datetime(pd.Series(values, index=frame.index, dtype=object), utc=True)
    dated = frame.copy()
    dated.insert(list(frame.columns).index("source") + 1, "date", column)
    return dated


def _pinned(pixels: np.ndarray) -> np.ndarray:
    """Each pixel (row, col) as four triangles from its sides to its centre."""
    rows, cols = pixels[:, 0].astype(float), pixels[:, 1].astype(float)
    corners = [(cols, rows), (cols + 1, rows), (cols + 1, rows + 1), (cols, rows + 1)]
    centre = (cols + 0.5, rows + 0.5)
    triangles = [
        np.stack([np.stack(p, axis=1) for p in (corners[k], corners[(k + 1) % 4], centre,
                                                 corners[k])], axis=1)
        for k in range(4)
    ]  # fmt: skip
    return np.asarray(shapely.polygons(np.concatenate(triangles)), dtype=object)


def _measure(geometry: gpd.GeoSeries, unit_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Areas (m²) and perimeters (m): in the local UTM zone for geographic CRSs (pixels without
    a CRS: `unit_m` is then pixels per grid unit)."""
    if not len(geometry):  # nothing to measure (geopandas would warn about degrees)
        return np.zeros(0), np.zeros(0)
    if geometry.crs is not None and geometry.crs.is_geographic:
        projected = geometry.to_crs(geometry.estimate_utm_crs())
        return projected.area.to_numpy(), projected.length.to_numpy()
    return geometry.area.to_numpy() * unit_m**2, geometry.length.to_numpy() * unit_m


@dataclass
class PolygonTotals:
    """Polygons written per class name: how many, and their area in `unit`: hectares, or pixels
    ("px") for a raster without a CRS."""

    count: dict[str, int]
    area: dict[str, float]
    unit: str = "ha"

    def add(self, frame: gpd.GeoDataFrame) -> None:
        georeferenced = frame.crs is not None
        self.unit = "ha" if georeferenced else "px"
        by_class = frame.groupby("class_name", sort=False)[measure_columns(georeferenced)[0]]
        per_unit = 1e4 if georeferenced else 1.0
        for name, n in by_class.count().items():
            self.count[str(name)] = self.count.get(str(name), 0) + int(n)
        for name, area in by_class.sum().items():
            self.area[str(name)] = self.area.get(str(name), 0.0) + float(area) / per_unit

    def sorted(self) -> PolygonTotals:
        return PolygonTotals(
            dict(sorted(self.count.items())),
            {k: round(v, 2) for k, v in sorted(self.area.items())},
            self.unit,
        )


def write_polygons(
    frames: gpd.GeoDataFrame | Iterable[gpd.GeoDataFrame],
    path: Path | None,
    classes: Sequence[ClassInfo],
    *,
    timestamp: str | None,
    parquet: Path | None = None,
    dates: Mapping[str, str | None] | None = None,
) -> PolygonTotals:
    """Write polygons as layer `polygons` of a new GeoPackage at `path` with its QGIS style,
    and/or as fiboa GeoParquet at `parquet`, batch by batch; returns count and area per class.

    `timestamp`, the scene's date (ISO 8601 UTC; None where it records none), is the polygons'
    `date` (the fields' determination datetime; empty without one) and the layers' last change
    (the Unix epoch without one), so that the same polygons give the same bytes; `dates` gives
    the polygons of each `source` their own (a mosaic of several scenes). Files are written
    under a temporary name and renamed when complete.
    """
    if isinstance(frames, gpd.GeoDataFrame):
        frames = [frames]
    with contextlib.ExitStack() as stack:
        fiboa = None if parquet is None else stack.enter_context(FiboaWriter(parquet))
        tmp = None
        if path is not None:
            tmp = stack.enter_context(writing(temporary_path(path).with_suffix(".tmp.gpkg")))
        try:
            totals = _write_batches(frames, tmp, fiboa, timestamp, dates)
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
            if tmp is not None and out_of_room(tmp):
                raise NoSpaceError(
                    f"{path}: no room left to write it ({err}: the disk is full, or a quota or "
                    "the file size limit `ulimit -f` is reached); nothing was written"
                ) from err
            raise
        if tmp is not None and path is not None:
            drawn = [c for c in classes if c.boundary is None]  # boundaries go to their objects
            add_gpkg_style(
                tmp, LAYER, class_categories(drawn), field="class_id", timestamp=timestamp or EPOCH,
                name="classes", description="convlora-geo class colours",
            )  # fmt: skip
            os.replace(tmp, path)
    return totals.sorted()


def _write_batches(
    frames: Iterable[gpd.GeoDataFrame],
    tmp: Path | None,
    fiboa: FiboaWriter | None,
    timestamp: str | None,
    dates: Mapping[str, str | None] | None,
) -> PolygonTotals:
    """Each batch of polygons appended to the GeoPackage at `tmp` and the fiboa file."""
    totals = PolygonTotals({}, {})
    created = False
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": timestamp or EPOCH})
    try:
        for frame in frames:
            totals.add(frame)
            # an empty batch's columns are numbers to pandas: a layer made from it had Real
            # columns, and the class names and sources of later batches were written as 0
            frame = _dated(frame.astype(dict.fromkeys(TEXT_COLUMNS, "str")), timestamp, dates)
            if fiboa is not None:
                fiboa.write(frame)
            if tmp is not None and (len(frame) or not created):
                with warnings.catch_warnings():  # without a CRS: said once, in pixel units
                    warnings.filterwarnings("ignore", "'crs' was not provided")
                    pyogrio.write_dataframe(
                        frame, tmp, layer=LAYER, geometry_type="Polygon", append=created,
                        **GPKG_OPTIONS,
                    )  # fmt: skip
                created = True
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
    return totals
