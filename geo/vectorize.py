"""Polygons from a class raster: one per connected region, whole across processing windows.

The class raster is read in bands of rows. Each band's regions (4-connected, per class) become
polygons in pixel coordinates; regions that meet across a band seam are joined with a union-find
on the seam's two pixel rows, and their pieces are unioned once no later band can extend them, so
the result equals polygonising the whole raster at once. Polygons are then simplified together
as a coverage (shared edges between neighbouring classes stay shared), filtered by area in m²,
measured in metres, and written to a GeoPackage with a default QGIS style.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage

from geo.raster import open_raster
from geo.styles import add_gpkg_style

LAYER = "polygons"
NODATA = 255
EARTH_M_PER_DEGREE = 111_320.0


@dataclass
class Region:
    """A connected region of one class: its outline in scene pixel coordinates and its pixels."""

    class_id: int
    geometry: shapely.Polygon
    pixels: int
    score_sum: float  # sum of the probability raster's values (0..255) over the region


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while (up := self.parent.get(root, root)) != root:
            root = up
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def regions(
    classes_path: str | Path, probability_path: str | Path, *, band_rows: int = 512
) -> Iterator[Region]:
    """Yield every non-background region of the class raster once, complete, in scan order.

    Memory holds one band of rows plus the regions that still touch the band's last row.
    """
    uf = _UnionFind()
    pending: dict[int, Region] = {}
    prev_labels = prev_classes = None
    next_id = 1
    with open_raster(str(classes_path)) as cls_src, open_raster(str(probability_path)) as p_src:
        width, height = cls_src.width, cls_src.height
        for row in range(0, height, band_rows):
            n = min(band_rows, height - row)
            window = Window(0, row, width, n)
            cls = cls_src.read(1, window=window)
            prob = p_src.read(1, window=window)
            labels, count = _label(cls)
            ids = labels.ravel()
            pixels = np.bincount(ids, minlength=count + 1)
            scores = np.bincount(ids, weights=prob.ravel(), minlength=count + 1)
            class_of = np.zeros(count + 1, dtype=np.int64)
            class_of[ids] = cls.ravel()
            shifted = Affine.translation(0, row)
            for shape, value in features.shapes(labels, labels > 0, 4, shifted):
                local = int(value)
                pending[next_id - 1 + local] = Region(
                    int(class_of[local]),
                    shapely.geometry.shape(shape),
                    int(pixels[local]),
                    float(scores[local]),
                )
            if prev_labels is not None:
                joined = (prev_labels > 0) & (labels[0] > 0) & (prev_classes == cls[0])
                pairs = np.unique(np.stack([prev_labels[joined], labels[0][joined]]), axis=1)
                for above, below in pairs.T:
                    uf.union(int(above), next_id - 1 + int(below))
            last = labels[-1]
            prev_labels = np.where(last > 0, last + next_id - 1, 0)
            prev_classes = cls[-1]
            next_id += count
            still_open = (
                set() if row + n >= height else set(np.unique(prev_labels[prev_labels > 0]))
            )
            yield from _close(pending, uf, {uf.find(int(x)) for x in still_open})


def _label(cls: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of each class (background and nodata excluded), numbered from 1."""
    labels = np.zeros(cls.shape, dtype=np.int32)
    count = 0
    for value in np.unique(cls):
        if value in (0, NODATA):
            continue
        lab, k = ndimage.label(cls == value)
        inside = lab > 0
        labels[inside] = lab[inside] + count
        count += k
    return labels, count


def _close(pending: dict[int, Region], uf: _UnionFind, open_roots: set[int]) -> Iterator[Region]:
    """Merge and yield the pending regions whose component no later band can reach."""
    groups: dict[int, list[int]] = {}
    for key in pending:
        root = uf.find(key)
        if root not in open_roots:
            groups.setdefault(root, []).append(key)
    for members in groups.values():
        parts = [pending.pop(k) for k in members]
        for k in members:
            uf.parent.pop(k, None)
        first = parts[0]
        geometry = first.geometry
        if len(parts) > 1:
            geometry = shapely.union_all([p.geometry for p in parts])
        yield Region(
            first.class_id,
            geometry,
            sum(p.pixels for p in parts),
            sum(p.score_sum for p in parts),
        )


def polygonize(
    classes_path: str | Path,
    probability_path: str | Path,
    classes: Sequence[dict[str, Any]],
    *,
    min_area: float = 500.0,
    simplify: float = 2.0,
    source: str = "",
    model: str = "",
    band_rows: int = 512,
) -> gpd.GeoDataFrame:
    """Polygons of every non-background region, on the class raster's CRS.

    Columns: class_id, class_name, score (mean winning-class probability, 0..1), area_m2,
    perimeter_m, source, model. Regions smaller than `min_area` m² are dropped; `simplify` is a
    tolerance in metres for a coverage simplification that keeps shared edges shared.
    """
    with open_raster(str(classes_path)) as src:
        transform, crs, height = src.transform, src.crs, src.height
    unit_m = _metres_per_unit(crs, transform, height)
    pixel_side_m = np.sqrt(abs(transform.determinant)) * unit_m
    kept = [
        r
        for r in regions(classes_path, probability_path, band_rows=band_rows)
        if r.pixels * pixel_side_m**2 >= min_area
    ]
    geoms = np.array([r.geometry for r in kept], dtype=object)
    tolerance = simplify / pixel_side_m
    # Coverage simplification (Visvalingam-Whyatt) drops vertices whose triangle is under
    # tolerance² px²; a pixel outline's corners have 0.5 px², so below sqrt(0.5) px nothing moves.
    if tolerance >= np.sqrt(0.5) and len(kept):
        # Vertices at every pixel corner make shared edges identical, as the coverage needs.
        dense = shapely.transform(shapely.segmentize(geoms, 1.0), np.round)
        geoms = shapely.coverage_simplify(dense, tolerance)
    a, b, c, d, e, f = transform[:6]
    geoms = shapely.transform(
        geoms, lambda xy: np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c,
                                           d * xy[:, 0] + e * xy[:, 1] + f])
    )  # fmt: skip
    names = {int(k["id"]): str(k["name"]) for k in classes}
    frame = gpd.GeoDataFrame(
        {
            "class_id": np.array([r.class_id for r in kept], dtype=np.int32),
            "class_name": [names.get(r.class_id, str(r.class_id)) for r in kept],
            "score": np.array([r.score_sum / (255.0 * r.pixels) for r in kept]).round(4),
            "source": [source] * len(kept),
            "model": [model] * len(kept),
        },
        geometry=gpd.GeoSeries(geoms, crs=crs),
    )
    area, perimeter = _measure(frame.geometry, unit_m)
    frame.insert(3, "area_m2", area.round(2))
    frame.insert(4, "perimeter_m", perimeter.round(2))
    return frame


def _metres_per_unit(crs: CRS | None, transform: Affine, height: int) -> float:
    """Metres per CRS unit: the linear unit of a projected CRS, 1 without a CRS, and for degrees
    the length of one degree at the scene's central latitude (geometric mean of x and y)."""
    if crs is None:
        return 1.0
    if crs.is_geographic:
        lat = transform.f + transform.e * height / 2  # at column 0
        return EARTH_M_PER_DEGREE * np.sqrt(max(np.cos(np.radians(lat)), 1e-6))
    return float(crs.linear_units_factor[1])


def _measure(geometry: gpd.GeoSeries, unit_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Areas (m²) and perimeters (m): in the local UTM zone for geographic CRSs."""
    if len(geometry) and geometry.crs is not None and geometry.crs.is_geographic:
        projected = geometry.to_crs(geometry.estimate_utm_crs())
        return projected.area.to_numpy(), projected.length.to_numpy()
    return geometry.area.to_numpy() * unit_m**2, geometry.length.to_numpy() * unit_m


def write_polygons(
    frame: gpd.GeoDataFrame, path: Path, classes: Sequence[dict[str, Any]], *, timestamp: str
) -> None:
    """Write `frame` as layer `polygons` of a new GeoPackage with its QGIS style.

    `timestamp` (ISO 8601 UTC) is stored as the layers' last change, so that the same polygons
    give the same bytes. The file is written under a temporary name and renamed when complete.
    """
    tmp = path.with_suffix(".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    polygons = bool(len(frame) == 0 or (frame.geom_type == "Polygon").all())
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": timestamp})
    try:
        pyogrio.write_dataframe(
            frame,
            tmp,
            layer=LAYER,
            driver="GPKG",
            geometry_type="Polygon" if polygons else "MultiPolygon",
            promote_to_multi=not polygons,
        )
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": None})
    add_gpkg_style(tmp, LAYER, classes, timestamp=timestamp)
    os.replace(tmp, path)
