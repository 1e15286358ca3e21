"""Summaries of prediction outputs for reports: polygon counts and areas per class."""

from __future__ import annotations

from pathlib import Path

import pyogrio

from geo.io.storage import gdal_env, gdal_path, is_url


def polygon_summary(gpkg: str | Path) -> list[dict[str, object]]:
    """One row per class: class id and name, polygon count, total area in hectares. A GeoPackage
    in object storage is read in place through GDAL's virtual file systems."""
    path = str(gpkg)
    if is_url(path):
        pyogrio.set_gdal_config_options(gdal_env(path))  # pyogrio's GDAL: process-wide settings
        path = gdal_path(path)
    frame = pyogrio.read_dataframe(
        path, layer="polygons", columns=["class_id", "class_name", "area_m2"], read_geometry=False
    )
    if frame.empty:
        return []
    grouped = frame.groupby(["class_id", "class_name"], sort=True)["area_m2"].agg(["count", "sum"])
    return [
        {
            "class_id": int(cid),
            "class_name": name,
            "polygons": int(row["count"]),
            "area_ha": round(float(row["sum"]) / 1e4, 2),
        }
        for (cid, name), row in grouped.iterrows()
    ]
