"""Vectorisation throughput on a stitched class raster, with and without seam merging.

The class raster is the real FTW 3-class model prediction (10 m, field interiors and field
boundaries) mosaicked 8x8; its score raster holds a fixed value per class. `polygonize` reads it
in bands of rows and merges regions across each band seam; reading it as one band (no seams)
is the reference. Both produce the same polygons; both are timed round-robin.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from benchmarks.data import FTW_CLASSES, area_km2, mosaic
from benchmarks.harness import Budget, interleaved
from geo.contracts.classes import parse_class_list
from geo.vectorize.polygons import polygonize

CLASSES = parse_class_list(
    [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "field interior", "color": "#33a02c"},
        {"id": 2, "name": "field boundary", "color": "#e31a1c"},
    ],
    "benchmark classes",
)
BAND_ROWS = 256
SCORE_BY_CLASS = np.array([0, 230, 180], dtype=np.uint8)


def score_raster(classes: Path, dest: Path) -> Path:
    """A uint8 score raster on the class raster's grid: a fixed score per class."""
    with rasterio.open(classes) as src:
        profile = {**src.profile, "nodata": 0}
        with rasterio.open(dest, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                dst.write(SCORE_BY_CLASS[src.read(1, window=window) % 3], 1, window=window)
    return dest


def run(budget: Budget) -> dict[str, Any]:
    times = 2 if budget.quick else 8
    with tempfile.TemporaryDirectory(prefix="bench-vectorize-") as folder:
        tmp = Path(folder)
        classes = mosaic(FTW_CLASSES, tmp / f"ftw_classes_{times}x{times}.tif", times)
        scores = score_raster(classes, tmp / "scores.tif")
        with rasterio.open(classes) as src:
            width, height = src.width, src.height
        km2 = area_km2(classes)
        counts: dict[str, int] = {}

        def vectorize(name: str, band_rows: int) -> None:
            frame = polygonize(classes, scores, CLASSES, band_rows=band_rows)
            counts[name] = len(frame)

        wall = interleaved(
            {
                "seams_merged": lambda: vectorize("seams_merged", BAND_ROWS),
                "one_band": lambda: vectorize("one_band", height),
            },
            budget.repeats,
            warmup=0 if budget.quick else 1,
        )
    merged, single = wall["seams_merged"]["min"], wall["one_band"]["min"]
    seams = (height - 1) // BAND_ROWS
    return {
        "key_figures": [
            "polygons_per_s_seams_merged",
            "km2_per_s_seams_merged",
            "polygons_per_s_one_band",
            "km2_per_s_one_band",
        ],
        "polygons_per_s_seams_merged": counts["seams_merged"] / merged,
        "km2_per_s_seams_merged": km2 / merged,
        "polygons_per_s_one_band": counts["one_band"] / single,
        "km2_per_s_one_band": km2 / single,
        "seams_merged_over_one_band_time": merged / single,
        "polygons": counts,
        "scene": f"{times}x{times} mosaic of {FTW_CLASSES.name} ({width}x{height}, 10 m)",
        "area_km2": round(km2, 2),
        "band_rows": BAND_ROWS,
        "seams": seams,
        "seams_merged_s": wall["seams_merged"],
        "one_band_s": wall["one_band"],
        "notes": [
            "geo.vectorize.polygons.polygonize with its defaults (4-connected regions, coverage "
            "simplification 2 m: nothing moves at 10 m, min area 4 pixels: 400 m², metres "
            "measured) on "
            f"{width}x{height} px = {km2:.1f} km²; "
            f"'seams merged' reads {BAND_ROWS}-row bands ({seams} seams joined), 'one band' "
            "reads the whole raster at once. km² are of the raster processed.",
        ],
    }
