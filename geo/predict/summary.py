"""Summaries of prediction outputs for reports: polygon counts and areas per class."""

from __future__ import annotations

from geo.io.storage import read_json


def polygon_summary(manifest: str) -> list[dict[str, object]]:
    """One row per class that has polygons: its name, polygon count and total area in hectares
    (`area_ha`; in pixels, `area_px`, for a scene without a CRS), from a prediction's manifest
    (a path or a URL: the GeoPackage itself is not read)."""
    document = read_json(manifest) or {}
    counts = document.get("polygons_per_class", {})
    unit = "px" if "polygon_area_px_per_class" in document else "ha"
    areas = document.get(f"polygon_area_{unit}_per_class", {})
    return [
        {"class_name": name, "polygons": count, f"area_{unit}": areas.get(name)}
        for name, count in sorted(counts.items())
    ]
