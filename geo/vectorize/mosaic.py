"""Class rasters of neighbouring scenes as one raster: a VRT mosaic, so that `vectorize` makes one
layer of them in which a field across two scenes' edge is one polygon, and each polygon names
the scene it comes from.

The mosaic lies on one raster's pixel grid (`_reference`: of the CRS most rasters share, the
finest; of CRSs shared by as many, the one of the finest pixel); `predict` writes each scene's
classes on the scene's own grid, and scenes of one tiling scheme (Sentinel-2 tiles of one UTM
zone, NAIP quarter quads) share one. A raster on another grid (a neighbouring UTM zone, another
pixel size, a grid shifted by part of a pixel) is resampled onto it first
(`geo.vectorize.regrid`, nearest neighbour), with a warning. Where rasters overlap, the newer
raster's pixels are drawn over the older's (in the order given where a raster records no date,
`_drawing_order`), except where it has no data. Rasters far apart (two farms in one layer) make
separate parts (`_groups`), each its own VRT, so that no read spans the gap."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import rasterio

from geo.contracts.classes import CLASSES_TAG, IGNORE, MODEL_TAG
from geo.errors import InputError
from geo.io.outputs import date_tags, scene_date
from geo.io.raster import open_raster
from geo.io.storage import gdal_path
from geo.io.units import pixel_metres
from geo.io.vrt import GDAL_TYPES, Band, Source, write_vrt
from geo.options import flag
from geo.vectorize.regrid import TargetGrid, regrid

log = logging.getLogger(__name__)
SCORE_NODATA = 0  # predict's probability rasters: 0 where the scene has no data
JOIN_GAP = 1024  # rasters nearer than this many pixels join one part of the mosaic


@dataclass(frozen=True)
class Part:
    """Class raster and score raster (None without) to read, as GDAL names them: a group of the
    mosaic's rasters that lie near each other as VRTs on the mosaic's grid (or the one raster
    given), and where its first pixel lies in the mosaic (row, col)."""

    classes: str
    scores: str | None
    offset: tuple[int, int]


@dataclass(frozen=True)
class Mosaic:
    """The mosaic's parts (`Part`: one, unless its rasters lie in groups far apart), a name per
    raster (its file name, its path where two share a name) and each raster's date
    (`scene_date`)."""

    parts: tuple[Part, ...]
    rasters: tuple[str, ...]
    names: tuple[str, ...]
    dates: tuple[str | None, ...]
    models: tuple[str, ...]  # the model that predicted each raster ("" where none says so)

    def sources(self, frame: gpd.GeoDataFrame) -> list[str]:
        """The name of the raster each polygon of `frame` comes from: the last raster (the one
        drawn on top) that has a class at the polygon's representative point."""
        found = np.full(len(frame), -1)
        if len(frame):
            points = frame.geometry.representative_point()
            xy = np.column_stack([points.x, points.y])
            for k in reversed(range(len(self.rasters))):
                todo = np.flatnonzero(found < 0)
                if not todo.size:
                    break
                with open_raster(self.rasters[k]) as src:
                    x0, y0, x1, y1 = src.bounds  # y0 > y1 for a raster stored south-up
                    inside = todo[
                        (xy[todo, 0] >= min(x0, x1)) & (xy[todo, 0] <= max(x0, x1))
                        & (xy[todo, 1] >= min(y0, y1)) & (xy[todo, 1] <= max(y0, y1))
                    ]  # fmt: skip
                    if inside.size:
                        values = np.ma.concatenate(
                            list(src.sample([tuple(p) for p in xy[inside]], masked=True))
                        )
                        ids = values.astype(np.float64).filled(np.nan)
                        drawn = ~np.isnan(ids) & (ids != IGNORE)
                        found[inside[drawn]] = k
        return [self.names[k] if k >= 0 else "" for k in found]


def build_mosaic(
    rasters: Sequence[str], scores: Sequence[str] | None, folder: Path, *, with_classes: bool
) -> Mosaic:
    """Write the mosaic VRTs of `rasters` (and of `scores`, checked to be one per raster, on its
    grid) into `folder`, with copies of the rasters on other grids resampled onto the mosaic's.
    `with_classes`: the rasters must list the same classes (`predict`'s metadata), which the
    mosaic then lists too (else a class map is given). InputError naming the raster that does
    not fit."""
    grids = [_grid(path) for path in rasters]
    score_paths = list(scores) if scores is not None else None
    first = grids[_reference(grids)]
    misfits = {k: problem for k, g in enumerate(grids) if (problem := first.misfit(g))}
    if misfits:
        named = [f"{grids[k].path} ({problem})" for k, problem in misfits.items()]
        shown = "; ".join(named[:5]) + (f"; and {len(named) - 5} more" if len(named) > 5 else "")
        log.warning(
            "resampled onto the grid of %s (nearest neighbour) to join the mosaic: %s",
            first.path, shown,
        )  # fmt: skip
    target = TargetGrid(first.crs, first.transform)
    for k in misfits:
        grid = grids[k]
        copy = regrid(grid.path, target, folder / f"{k}_classes.tif", _nodata(grid, IGNORE))
        grids[k] = replace(_grid(str(copy)), classes=grid.classes, colors=grid.colors,
                           date=grid.date)  # fmt: skip
        if score_paths is not None:
            score_paths[k] = str(
                regrid(score_paths[k], target, folder / f"{k}_scores.tif", SCORE_NODATA)
            )
    places = [first.place_of(g) for g in grids]  # (col, row) in the first raster's grid
    col0, row0 = min(c for c, _ in places), min(r for _, r in places)
    at = [(c - col0, r - row0) for c, r in places]
    metadata = _shared_metadata(grids, with_classes)
    order = _drawing_order(grids)
    grids, at = [grids[k] for k in order], [at[k] for k in order]
    score_grids = None if score_paths is None else [_grid(score_paths[k]) for k in order]
    groups = _groups(grids, at)
    if len(groups) > 1:
        log.info(
            "the mosaic's %d class rasters lie in %d groups far apart: vectorised group by "
            "group", len(grids), len(groups),
        )  # fmt: skip
    parts = []
    for n, members in enumerate(groups):
        left, top = min(at[k][0] for k in members), min(at[k][1] for k in members)
        width = max(at[k][0] + grids[k].width for k in members) - left
        height = max(at[k][1] + grids[k].height for k in members) - top
        x0, y0 = first.transform @ (col0 + left, row0 + top)
        layout = {
            "width": width, "height": height, "crs_wkt": first.crs.to_wkt(),
            "transform": (x0, first.transform.a, 0.0, y0, 0.0, first.transform.e),
        }  # fmt: skip
        places = [(at[k][0] - left, at[k][1] - top) for k in members]
        suffix = f"_{n + 1}" if len(groups) > 1 else ""
        dtype = np.result_type(*(grids[k].dtype for k in members)).name
        classes = write_vrt(
            folder / f"classes{suffix}.vrt", metadata=metadata,
            bands=[Band("class id", dtype if dtype in GDAL_TYPES else "float64",
                        _sources([grids[k] for k in members], places, IGNORE), IGNORE,
                        next((g.colors for g in grids if g.colors), None))], **layout,
        )  # fmt: skip
        score_vrt = None
        if score_grids is not None:
            score_vrt = write_vrt(
                folder / f"scores{suffix}.vrt",
                bands=[Band("probability", "uint8",
                            _sources([score_grids[k] for k in members], places, SCORE_NODATA),
                            SCORE_NODATA)], **layout,
            )  # fmt: skip
        parts.append(Part(str(classes), None if score_vrt is None else str(score_vrt), (top, left)))
    names = tuple(_names(rasters)[k] for k in order)
    dates = tuple(g.date for g in grids)
    models = tuple(g.model for g in grids)
    return Mosaic(tuple(parts), tuple(g.path for g in grids), names, dates, models)


def _groups(grids: Sequence[_Grid], at: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The rasters (indices, in drawing order) in groups that lie within JOIN_GAP pixels of
    each other, ordered by their first row and column: no object crosses a wider gap of no
    data, so each group is vectorised on its own, in bands of rows only as wide as it is."""
    boxes = [(c, r, c + g.width, r + g.height) for (c, r), g in zip(at, grids, strict=True)]
    group = list(range(len(boxes)))

    def find(k: int) -> int:
        while group[k] != k:
            k = group[k]
        return k

    for i, a in enumerate(boxes):
        for j in range(i):
            b = boxes[j]
            near = a[0] - JOIN_GAP < b[2] and b[0] - JOIN_GAP < a[2]
            if near and a[1] - JOIN_GAP < b[3] and b[1] - JOIN_GAP < a[3]:
                group[find(i)] = find(j)
    members: dict[int, list[int]] = {}
    for k in range(len(boxes)):
        members.setdefault(find(k), []).append(k)
    return sorted(
        members.values(), key=lambda m: (min(boxes[k][1] for k in m), min(boxes[k][0] for k in m))
    )


def _reference(grids: Sequence[_Grid]) -> int:
    """The raster whose pixel grid the mosaic takes: among the unrotated ones in the CRS that
    most of them share (of CRSs shared by as many, the one of the finest pixel in metres), the
    one of the finest pixels, stored north-up where one is (the first given of equals).
    InputError when every raster is rotated."""
    upright = [k for k, g in enumerate(grids) if g.transform.b == g.transform.d == 0]
    if not upright:
        raise InputError(
            f"{grids[0].path}: a rotated grid; warp it north-up first (gdalwarp) to vectorise "
            "it with other class rasters"
        )
    wkt = {k: grids[k].crs.to_wkt() for k in upright}
    counts = Counter(wkt.values())
    tied = [k for k in upright if counts[wkt[k]] == max(counts.values())]
    finest = min(tied, key=lambda k: _pixel_metres(grids[k]))
    shared = [k for k in upright if wkt[k] == wkt[finest]]

    def rank(k: int) -> tuple[float, bool]:
        t = grids[k].transform
        return abs(t.a * t.e), not (t.a > 0 > t.e)

    return min(shared, key=rank)


def _pixel_metres(grid: _Grid) -> float:
    return pixel_metres(grid.crs, grid.transform, grid.height)


def _nodata(grid: _Grid, default: float) -> float:
    return default if grid.nodata is None else grid.nodata


def _drawing_order(grids: Sequence[_Grid]) -> list[int]:
    """The order the rasters are drawn in, each over the ones before: oldest first, so that
    where scenes of several dates overlap the newest shows, when every raster records its date;
    else (and among rasters of one date) the order given."""
    if any(g.date is None for g in grids):
        return list(range(len(grids)))
    return sorted(range(len(grids)), key=lambda k: str(grids[k].date))


@dataclass(frozen=True)
class _Grid:
    path: str
    width: int
    height: int
    crs: rasterio.crs.CRS
    transform: rasterio.Affine
    dtype: str
    nodata: float | None
    block: tuple[int, int]
    classes: str | None
    colors: dict[int, tuple[int, ...]] | None
    date: str | None
    model: str

    def place_of(self, other: _Grid) -> tuple[int, int]:
        """Where `other`'s first pixel lies in this raster's pixel grid (column, row)."""
        col, row = ~self.transform @ (other.transform.c, other.transform.f)
        return round(col), round(row)

    def misfit(self, other: _Grid) -> str | None:
        """Why `other` does not lie on this raster's pixel grid (None when it does)."""
        if other.crs != self.crs:
            return f"in {_crs_name(other.crs)}, not {_crs_name(self.crs)}"
        a, o = self.transform, other.transform
        if o.b or o.d:
            return "a rotated grid"
        if math.isclose(a.e, -o.e, rel_tol=1e-9):
            return "stored south-up" if o.e > 0 else "stored north-up"
        if math.isclose(a.a, -o.a, rel_tol=1e-9):
            return "stored east to west" if o.a < 0 else "stored west to east"
        if not (math.isclose(a.a, o.a, rel_tol=1e-9) and math.isclose(a.e, o.e, rel_tol=1e-9)):
            return f"pixels of {abs(o.a):g} x {abs(o.e):g}, not {abs(a.a):g} x {abs(a.e):g}"
        offsets = ((o.c - a.c) / a.a, (o.f - a.f) / a.e)
        if any(abs(v - round(v)) > 1e-6 for v in offsets):
            return "a grid shifted by part of a pixel"
        return None


def _grid(path: str) -> _Grid:
    with open_raster(path) as src:
        if src.crs is None:
            raise InputError(
                f"{path}: has no CRS; class rasters vectorised together must be georeferenced"
            )
        try:
            colors = {k: tuple(v) for k, v in src.colormap(1).items()}
        except ValueError:  # no colour table
            colors = None
        return _Grid(
            path, src.width, src.height, src.crs, src.transform, src.dtypes[0], src.nodata,
            src.block_shapes[0][::-1], src.tags().get(CLASSES_TAG), colors, scene_date(path),
            src.tags().get(MODEL_TAG, ""),
        )  # fmt: skip


def _sources(
    grids: Sequence[_Grid], at: Sequence[tuple[int, int]], nodata: float
) -> tuple[Source, ...]:
    """Each raster at its place in the mosaic (`at`: its first pixel's column and row); its
    no-data pixels leave what lies below."""
    return tuple(
        Source(
            path=gdal_path(g.path), band=1, width=g.width, height=g.height, dtype=g.dtype,
            block=g.block, window=(0.0, 0.0, float(g.width), float(g.height)), resampling="nearest",
            nodata=_nodata(g, nodata), dst=(col, row, g.width, g.height),
        )
        for g, (col, row) in zip(grids, at, strict=True)
    )  # fmt: skip


def _shared_metadata(grids: Sequence[_Grid], with_classes: bool) -> dict[str, str]:
    """The classes the rasters list (InputError where they differ) and their date, if one."""
    metadata: dict[str, str] = {}
    if with_classes:
        listed = {g.classes for g in grids}
        if len(listed) > 1:
            first = grids[0]
            other = next(g for g in grids if g.classes != first.classes)
            if other.classes and first.classes:
                problem = f"{other.path}: lists other classes than {first.path} (another model?)"
            else:
                bare, listing = (first, other) if other.classes else (other, first)
                problem = f"{bare.path}: lists no classes, unlike {listing.path}"
            raise InputError(
                f"{problem}; give {flag('class_map')} to read them with one list of classes"
            )
        if grids[0].classes is not None:
            metadata[CLASSES_TAG] = grids[0].classes
    dates = {g.date for g in grids}
    if len(dates) == 1:
        metadata.update(date_tags(dates.pop()))
    return metadata


def _names(rasters: Sequence[str]) -> tuple[str, ...]:
    """File names, or the whole path for names that two rasters share."""
    counts = Counter(Path(r).name for r in rasters)
    return tuple(Path(r).name if counts[Path(r).name] == 1 else r for r in rasters)


def _crs_name(crs: rasterio.crs.CRS) -> str:
    """EPSG:N, else the CRS's name, else its projection's ("an unnamed Albers Equal Area CRS")."""
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    full = pyproj.CRS.from_wkt(crs.to_wkt())
    if full.name.lower() not in {"unnamed", "unknown", ""}:
        return full.name
    operation = full.coordinate_operation
    return f"an unnamed {operation.method_name} CRS" if operation else "an unnamed CRS"
