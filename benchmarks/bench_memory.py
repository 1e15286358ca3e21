"""Peak memory of `predict_scene` as the scene grows: 1x, 4x and 16x the area of a real scene.

The larger scenes are 2x2 and 4x4 mosaics of the real scene (alternate copies mirrored), written
block by block; each prediction runs in a fresh interpreter with the same model and tile size.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import rasterio

from benchmarks.child import measure
from benchmarks.data import FTW_IMAGE, RGB_BYTE, mosaic
from benchmarks.harness import Budget, goal

GOAL_RSS = 1.25
OVERLAP = 32
WHOLE_SCENE_ACCUMULATORS = 4 * 4  # float32 bytes per pixel of 3 class sums and a weight


def run(budget: Budget) -> dict[str, Any]:
    base, crop = (FTW_IMAGE, 128) if budget.quick else (RGB_BYTE, None)
    variant, size = "tiny", 128 if budget.quick else 256
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        tmp = Path(folder)
        for times in (1, 2, 4):
            image = mosaic(base, tmp / f"{base.stem}_{times}x{times}.tif", times, crop=crop)
            out = tmp / f"out-{times}"
            args = ["ours", str(image), str(out), str(base), variant, str(size), str(OVERLAP)]
            child = measure(args, fresh=not budget.quick)
            with_start = child["rss_at_start_mib"]
            megapixels = _megapixels(image)
            rows.append(
                {
                    "area": f"{times * times}x",
                    "scene": image.name,
                    "megapixels": round(megapixels, 2),
                    "peak_rss_mib": round(child["peak_rss_mib"], 1),
                    "rss_at_start_mib": round(with_start, 1),
                    "growth_mib": round(child["peak_rss_mib"] - with_start, 1),
                    "predict_s": round(child["seconds"], 2),
                    "megapixels_per_s": round(megapixels / child["seconds"], 3),
                    "process_lifetime_peak_mib": child["process_lifetime_peak_mib"],
                    "whole_scene_float32_accumulators_mib": round(
                        megapixels * 1e6 * WHOLE_SCENE_ACCUMULATORS / 2**20, 1
                    ),
                }
            )
    key = rows[2]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    growth = rows[2]["growth_mib"] - rows[0]["growth_mib"]
    return {
        "key_figures": ["rss_16x_over_1x"],
        "rss_16x_over_1x": key,
        "growth_16x_minus_1x_mib": round(growth, 1),
        "goals": {"rss_16x_over_1x": goal(key, "<=", GOAL_RSS)},
        "rows": rows,
        "notes": [
            f"predict_scene with the untrained {variant} conv-lora SAM at {size} px, overlap "
            f"{OVERLAP}, batch 4, on {base.name}{f' (cropped to {crop} px)' if crop else ''} and "
            "2x2 / 4x4 mosaics of it; one fresh "
            "interpreter per scene (in this interpreter in quick mode).",
            "Peak RSS while predicting (high-water mark reset when predict_scene starts), which "
            "includes the resident interpreter, torch and model; growth_mib is what the "
            "prediction added. whole_scene_float32_accumulators_mib is what whole-scene "
            "accumulators (3 class sums and a weight) alone would take.",
        ],
        "tables": {"per scene": rows},
    }


def _megapixels(path: Path) -> float:
    with rasterio.open(path) as src:
        return src.width * src.height / 1e6
