"""Polygons from a class raster, GIS-ready: one per region (see `geo.vectorize.regions`),
simplified together as a coverage (shared edges between neighbouring classes stay shared),
filtered by area in m², measured in metres, and written to a GeoPackage with a QGIS style.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from affine import Affine
from rasterio.crs import CRS

from geo.contracts.classes import ClassInfo
from geo.io.raster import open_raster
from geo.io.styles import add_gpkg_style
from geo.vectorize.regions import regions

LAYER = "polygons"
EARTH_M_PER_DEGREE = 111_320.0


def polygonize(
    classes_path: str | Path,
    probability_path: str | Path,
    classes: Sequence[ClassInfo],
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
    names = {c.id: c.name for c in classes}
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
    frame: gpd.GeoDataFrame, path: Path, classes: Sequence[ClassInfo], *, timestamp: str
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
