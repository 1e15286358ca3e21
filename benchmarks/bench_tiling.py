"""Tiling throughput: `tile_scenes` in MB/s of source pixels against a plain sequential read.

The scene is an 8x8 mosaic of the real Nebraska Landsat scene (4096 x 4096, 3 bands int16) with
its centre-pivot polygons as labels; the baseline reads the same file block by block with
rasterio (without GDAL's block cache: see `raw_read`). Both are timed round-robin; the same
scene tiled at 256 px (`small_tiles_over_raw_read`, no goal) shows the cost per tile. Where the time
goes: the seconds per stage that each tiling run logs (read, labels, compress + write,
statistics, ...), for the fastest run on Dask's threads and for a run on Dask's synchronous
scheduler (one task at a time; its writer threads still write tiles while the next are read, so
read and write overlap). A goal missed is explained further by a profile of that synchronous run
(cProfile sees inside the tasks, not the writer threads).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio

from benchmarks.data import NEBRASKA, PIVOT_CLASSES, PIVOTS, mosaic, source_megabytes
from benchmarks.harness import Budget, goal, interleaved, profile_top
from geo.tiling import TileConfig, tile_scenes

GOAL_RATIO = 0.5
STAGES = {  # stage logged by tile_scenes: what it covers
    "check": "pre-flight check (metadata, labels file, input checksums)",
    "statistics": "band statistics (tile cores sampled, summarised)",
    "read": "tiles read and decoded (each source block once, through GDAL's cache), valid masks",
    "labels": "labels rasterised or read per tile, tile summaries",
    "write": "tiles compressed (Blosc LZ4, bit shuffle) and written, on a writer thread",
    "index": "tile index GeoPackage, attributes, publish",
}


RAW_READ_CACHE = 128  # bytes: no GDAL block cache (each block is read once; a cache adds a copy)


def raw_read(path: Path) -> None:
    """Read every block of every band once, in file order, without GDAL's block cache. GDAL's
    cache size is one setting for the whole process, and tiling, reading from threads, leaves
    it at what its reads set (128 bytes before tiling read through the cache, which is how the
    earlier runs of this benchmark read: 0.21 s for the mosaic; 0.25 s with a cache)."""
    with rasterio.Env(GDAL_CACHEMAX=RAW_READ_CACHE), rasterio.open(path) as src:
        for _, window in src.block_windows(1):
            src.read(window=window)


class _StageLog(logging.Handler):
    """Keeps the seconds per stage that each tiling run logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.runs: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "stage_seconds"):
            self.runs.append(record.stage_seconds)


@contextmanager
def stage_log() -> Iterator[_StageLog]:
    """Collect the stage seconds of the tiling runs inside the block (nothing is printed)."""
    logger, handler = logging.getLogger("geo.tiling.run"), _StageLog()
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def stage_table(threads: dict[str, float], sync: dict[str, float]) -> list[dict[str, Any]]:
    """One row per stage: seconds on Dask's threads and on the synchronous scheduler (summed
    over the threads that ran them)."""
    total = sum(sync.values())
    return [
        {
            "stage": stage,
            "covers": covers,
            "threads_s": round(threads.get(stage, 0.0), 3),
            "sync_s": round(sync.get(stage, 0.0), 3),
            "sync_share": round(sync.get(stage, 0.0) / total, 3),
        }
        for stage, covers in STAGES.items()
    ]


SMALL_TILES = (256, 32)  # the tile size and overlap of many training stores: more files per MB


def run(budget: Budget) -> dict[str, Any]:
    times, tile, overlap = (1, 256, 32) if budget.quick else (8, 1024, 128)
    rounds = budget.noisy_repeats
    # errors only: the full mode's mosaic has its pivots in one 1024 px tile, and each of its
    # 20-odd runs would warn that one labelled tile gives no validation split
    logging.getLogger("geo").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-tiling-") as folder:
        tmp = Path(folder)
        scene = mosaic(NEBRASKA, tmp / f"nebraska_{times}x{times}.tif", times)
        megabytes = source_megabytes(scene)
        runs = itertools.count()
        stages: list[tuple[float, dict[str, float]]] = []  # (wall s, stage s) of each run

        def tiling(scheduler: str | None = None, size: tuple[int, int] = (tile, overlap)) -> None:
            out = tmp / f"store-{next(runs)}.zarr"
            config = TileConfig(
                images=[str(scene)], labels=[str(PIVOTS)], class_map=str(PIVOT_CLASSES),
                out=str(out), tile_size=size[0], overlap=size[1], dask_address=scheduler,
            )  # fmt: skip
            start = time.perf_counter()
            with stage_log() as logged:
                tile_scenes(config, progress=False)
            stages.append((time.perf_counter() - start, logged.runs[-1]))
            shutil.rmtree(out)  # not timed: the disk holds one store at a time

        wall = interleaved({"tile": tiling, "raw_read": lambda: raw_read(scene)}, rounds, warmup=1)
        small = interleaved({"tile": lambda: tiling(size=SMALL_TILES)}, rounds, warmup=0)
        key = wall["raw_read"]["min"] / wall["tile"]["min"]
        timed = stages[1 : rounds + 1]  # the runs of `wall` after its warm-up
        fastest = min(timed, key=lambda run: run[0])[1]
        sync = interleaved({"sync": lambda: tiling("sync")}, 1, warmup=0)["sync"]
        breakdown = stage_table(fastest, stages[-1][1])
        profile = None if key >= GOAL_RATIO else profile_top(lambda: tiling("sync"), limit=15)
        with rasterio.open(scene) as src:
            shape = f"{src.width}x{src.height}, {src.count} bands {src.dtypes[0]}"
    result: dict[str, Any] = {
        "key_figures": [
            "tiling_over_raw_read",
            "tile_mb_per_s",
            "raw_read_mb_per_s",
            "small_tiles_over_raw_read",
        ],
        "tiling_over_raw_read": key,
        "tiling_over_raw_read_median": wall["raw_read"]["median"] / wall["tile"]["median"],
        "tile_mb_per_s": megabytes / wall["tile"]["min"],
        "raw_read_mb_per_s": megabytes / wall["raw_read"]["min"],
        "goals": {"tiling_over_raw_read": goal(key, ">=", GOAL_RATIO)},
        "scene": f"{times}x{times} mosaic of {NEBRASKA.name} ({shape})",
        "source_mb": round(megabytes, 2),
        "tile_size": tile,
        "overlap": overlap,
        "tile_s": wall["tile"],
        "raw_read_s": wall["raw_read"],
        "small_tiles_over_raw_read": wall["raw_read"]["min"] / small["tile"]["min"],
        "small_tiles_s": small["tile"],
        "tables": {"where tiling's time goes, seconds per stage": breakdown},
        "notes": [
            f"tile_scenes (Dask threads, default settings) with pivots.gpkg labels, {tile} px "
            f"tiles, overlap {overlap}, into a Zarr store, vs a block-by-block rasterio read of "
            "the same deflate-compressed GeoTIFF without GDAL's block cache; MB of uncompressed "
            f"source pixels per second of the fastest of {rounds} runs each, timed round-robin "
            "(tiling_over_raw_read_median: the same of the median runs).",
            "Stage seconds as tile_scenes logs them: threads_s of the fastest run on Dask's "
            "threads (summed over the threads, so they may exceed its wall time), sync_s of "
            f"one run on the synchronous scheduler ({sync['min']:.2f} s wall), one task at a "
            "time, where only a chain's writer threads overlap its reads.",
            f"small_tiles_over_raw_read: the same with {SMALL_TILES[0]} px tiles, overlap "
            f"{SMALL_TILES[1]} ({small['tile']['min']:.2f} s; no goal): many more, smaller chunk "
            "files for the same pixels.",
        ],
    }
    result["tile_sync_scheduler_s"] = sync
    if profile is not None:
        result["profile_sync_scheduler"] = profile
        result["tables"] |= {
            "cProfile of one tiling run, sync scheduler: own time": profile["own_s"],
            "cProfile of one tiling run, sync scheduler: cumulative": profile["cumulative_s"],
        }
        own = ", ".join(f"{r['function']} {r['own_s']} s" for r in profile["own_s"][:5])
        result["notes"].append(
            f"Goal missed by {result['goals']['tiling_over_raw_read']['missed_by']:.0%}: tiling "
            f"takes {wall['tile']['min']:.2f} s where reading the file takes "
            f"{wall['raw_read']['min']:.3f} s ({sync['min']:.2f} s on the sync scheduler). Most "
            f"own time in the profiled run: {own}."
        )
    return result
