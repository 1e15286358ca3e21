"""Tile large scenes and their labels into a Zarr tile store with windowed reads only.

Memory stays at a few tiles per worker whatever the scene size: every task reads its own windows
of the scene and its labels and writes its tiles straight into the store (one tile per chunk).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.callbacks import Callback
from rasterio.windows import Window

from convlora.files import atomic_write_json
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import (
    SPLIT_NAMES,
    SceneRecord,
    StoreInfo,
    create_store,
    open_arrays,
    write_info,
    write_split,
)
from geo.errors import InputError
from geo.io.outputs import discard_on_failure, exclusive
from geo.io.progress import Progress
from geo.io.raster import SceneInfo, fill_value, open_raster, pixel_size_m, read_window
from geo.tiling import split as splitting
from geo.tiling import stats
from geo.tiling.config import TileConfig
from geo.tiling.index import write_tile_index
from geo.tiling.inputs import LabelSource, TilingRequest, check_tiling
from geo.tiling.plan import Tile, footprints, plan_tiles

log = logging.getLogger(__name__)

BLOCK_TILES = 8  # tiles per Dask task
LOCAL_SCHEDULERS = ("threads", "processes", "sync", "synchronous", "single-threaded")


def tile_scenes(config: TileConfig, *, progress: bool = True) -> Path:
    """Tile the configured scenes and labels into the Zarr tile store `config.out`; its path.

    The store is keyed by a fingerprint of every input's sha256 and every setting. When `out`
    already holds a store with the same fingerprint it is returned without any work; another
    tile store there is replaced only with `overwrite`, and anything else is never touched. The
    store is built under a hidden temporary name beside `out` (`.NAME.partial-FINGERPRINT`) and
    renamed when complete, so `out` never holds a partial store; a killed run (or one that
    failed for a passing reason) leaves that folder, and the next run with the same fingerprint
    resumes it, skipping finished tile blocks. A run that fails on bad input or a full disk
    removes it. Everything about the inputs is checked first (`check_tiling`).

    Tiles follow `GridSpec` (overlapping, last row and column on the scene edge, a scene smaller
    than a tile padded and its padding invalid); see `geo.contracts.tile_store` for the layout,
    `geo.tiling.split` for the spatial split and `geo.tiling.labels` for what is labelled.
    """
    request = check_tiling(config)
    out, fp = request.out, request.fingerprint
    if request.reuse:
        log.info("%s is up to date (fingerprint %s): reusing it", out, fp[:12])
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{fp[:16]}"
    with exclusive(out, "tile store"), discard_on_failure(partial, out):
        info = _Job(request, partial).run(config.dask_address, progress)
        write_info(partial, info)
        _publish(partial, out)
    log.info("wrote %d tiles to %s", info.n_tiles, out)
    return out


class _Job:
    """One tiling run into a temporary store folder: plan, statistics, split, tiles, index."""

    def __init__(self, request: TilingRequest, partial: Path) -> None:
        self.request = request
        self.scenes, self.sources = request.scenes, request.sources
        self.bands, self.cmap = request.bands, request.cmap
        self.partial = partial
        self.progress_dir = partial / "_progress"
        self.dtype = str(np.result_type(*[s.dtype for s in self.scenes]))
        self.tiles, self.scene_tiles = plan_tiles(self.scenes, request.tile_size, request.overlap)

    def run(self, scheduler: str | None, progress: bool) -> StoreInfo:
        """Fill the temporary store and return its StoreInfo (statistics, split, scenes...)."""
        request, seed = self.request, self.request.config.split_seed
        prints = footprints(self.tiles, self.scenes, request.tile_size - request.overlap)
        if not (self.progress_dir / "created").exists():
            self._create()
        rows, normalization = self._compute(seed, scheduler, progress)
        labelled = np.array([r["label_coverage"] > 0 for r in rows], dtype=bool)
        split = splitting.split_labelled(prints, labelled, request.config.val_fraction, seed)
        write_split(self.partial, split)
        write_tile_index(self.partial, self.tiles, self.scenes, rows, split, prints)
        return StoreInfo(
            path=request.out,
            tile_size=request.tile_size,
            overlap=request.overlap,
            bands=tuple(self.bands),
            band_names=tuple(self.scenes[0].band_names[b - 1] for b in self.bands),
            band_colors=tuple(
                self.scenes[0].color_interp[b - 1] if self.scenes[0].color_interp else ""
                for b in self.bands
            ),
            dtype=self.dtype,
            class_map=self.cmap,
            normalization=normalization,
            n_tiles=len(self.tiles),
            split_counts={n: int((split == c).sum()) for c, n in SPLIT_NAMES.items()},
            class_pixels=self._class_pixels(rows, split),
            scenes=tuple(self._scene_record(i) for i in range(len(self.scenes))),
            fingerprint=request.fingerprint,
            pixel_size_m=_median_pixel_size(self.scenes),
            settings=request.settings,
            inputs=tuple(request.inputs),
        )

    def _create(self) -> None:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        windows = [[t.window.col_off, t.window.row_off, t.window.width, t.window.height]
                   for t in self.tiles]  # fmt: skip
        index: dict[str, np.ndarray] = {
            "split": np.zeros(len(self.tiles), dtype=np.uint8),  # decided once labels are known
            "scene": np.asarray([t.scene for t in self.tiles], dtype=np.int32),
            "window": np.asarray(windows, dtype=np.int64),
        }
        fill = fill_value(self.dtype, self.scenes[0].nodata)
        create_store(
            self.partial, len(self.tiles), len(self.bands), self.request.tile_size, self.dtype,
            fill, index,
        )  # fmt: skip
        self.progress_dir.mkdir()
        (self.progress_dir / "created").touch()

    def _compute(
        self, seed: int, scheduler: str | None, progress: bool
    ) -> tuple[list[dict[str, Any]], Any]:
        """Run the statistics and the unfinished tile blocks through Dask: (tile rows, stats)."""
        budget = stats.scene_budget(len(self.scenes))
        stat_tasks = [
            dask.delayed(stats.sample_scene, pure=True)(
                s, self.bands, budget, seed, i, dask_key_name=f"stats-{i}"
            )
            for i, s in enumerate(self.scenes)
        ]
        done, blocks = {}, []
        for k, block in enumerate(self._blocks()):
            marker = self.progress_dir / f"block-{k}.json"
            if marker.exists():
                done[k] = json.loads(marker.read_text())
            else:
                blocks.append((k, block))
        if done:
            log.info(
                "resuming %s: %d of %d tile blocks already done",
                self.partial, len(done), len(done) + len(blocks),
            )  # fmt: skip
        label_tasks = {
            s: dask.delayed(self.sources[s], name=f"labels-{s}", traverse=False)
            for s in {b[0].scene for _, b in blocks}
        }
        block_tasks = [
            dask.delayed(_tile_block, pure=False)(
                str(self.partial),
                self.scenes[block[0].scene],
                label_tasks[block[0].scene],
                self.bands,
                self.dtype,
                self.cmap.num_classes,
                [(t.index, t.window, t.core) for t in block],
                str(self.progress_dir / f"block-{k}.json"),
                dask_key_name=f"tile-block-{k}",
            )
            for k, block in blocks
        ]
        total = sum(len(b) for _, b in blocks)
        results = _run([*stat_tasks, *block_tasks], scheduler, progress, total)
        samples, new_rows = results[: len(stat_tasks)], results[len(stat_tasks) :]
        normalization = stats.summarize(list(samples))
        if normalization is None:
            raise InputError(f"{self.scenes[0].path}: no valid pixel in any scene (all nodata?)")
        rows = [r for k in sorted(done) for r in done[k]] + [r for block in new_rows for r in block]
        self._warn_unmapped(rows)
        self._warn_infinite(rows)
        return sorted(rows, key=lambda r: r["tile"]), normalization

    def _blocks(self) -> list[list[Tile]]:
        blocks: list[list[Tile]] = []
        current: list[Tile] = []
        for t in self.tiles:
            if current and (current[0].scene != t.scene or len(current) == BLOCK_TILES):
                blocks.append(current)
                current = []
            current.append(t)
        return [*blocks, current]

    def _warn_unmapped(self, rows: list[dict[str, Any]]) -> None:
        """One warning for all label rasters: which codes no class lists."""
        values: set[str] = set()
        scenes: set[int] = set()
        for r in rows:
            if r["unmapped"]:
                values.update(r["unmapped"])
                scenes.add(self.tiles[r["tile"]].scene)
        if values:
            log.warning(
                "label value(s) %s in %d label raster(s) (e.g. %s) are in no class: they become %s",
                ", ".join(sorted(values, key=_num)[:30]),
                len(scenes),
                self.request.config.labels[min(scenes)],
                self.cmap.unmapped,
            )

    def _warn_infinite(self, rows: list[dict[str, Any]]) -> None:
        """One warning per scene that holds infinite pixel values (treated as nodata), with
        their count (each tile counts those of its core, so overlaps count once)."""
        per_scene: dict[int, int] = {}
        for r in rows:
            if r["infinite"]:
                scene = self.tiles[r["tile"]].scene
                per_scene[scene] = per_scene.get(scene, 0) + r["infinite"]
        for scene, count in sorted(per_scene.items()):
            log.warning(
                "%s: %d pixels hold infinite values; they are treated as nodata",
                self.scenes[scene].path, count,
            )  # fmt: skip

    def _class_pixels(
        self, rows: list[dict[str, Any]], split: np.ndarray
    ) -> dict[str, tuple[int, ...]]:
        counts = {n: np.zeros(self.cmap.num_classes, dtype=np.int64) for n in SPLIT_NAMES.values()}
        for r in rows:
            counts[SPLIT_NAMES[int(split[r["tile"]])]] += np.asarray(r["class_pixels"])
        return {n: tuple(int(x) for x in c) for n, c in counts.items()}

    def _scene_record(self, i: int) -> SceneRecord:
        scene = self.scenes[i]
        return SceneRecord(
            path=scene.path, crs=scene.crs_wkt, transform=tuple(scene.transform),
            width=scene.width, height=scene.height, dtype=scene.dtype, nodata=scene.nodata,
            tiles=self.scene_tiles[i],
        )  # fmt: skip


def _median_pixel_size(scenes: list[SceneInfo]) -> float | None:
    sizes = [s for s in (pixel_size_m(scene) for scene in scenes) if s is not None]
    return float(np.median(sizes)) if sizes else None


def _num(value: str) -> tuple[float, str]:
    try:
        return float(value), value
    except ValueError:
        return float("inf"), value


def _tile_block(
    store: str,
    scene: SceneInfo,
    source: LabelSource,
    bands: list[int],
    dtype: str,
    n_classes: int,
    tiles: list[tuple[int, Window, Window]],
    marker: str,
) -> list[dict[str, Any]]:
    """Read, label and write a few tiles of one scene; returns one summary row per tile."""
    images, labels, valids = open_arrays(store)
    fill = fill_value(dtype, scene.nodata)
    rows = []
    with open_raster(scene.path) as src, source.reader() as read_labels:
        for index, window, core in tiles:
            data, valid, infinite = read_window(src, window, bands, dtype, fill)
            label, unmapped = read_labels(window)
            label[~valid] = IGNORE
            images[index] = data
            labels[index] = label
            valids[index] = valid
            labelled = label != IGNORE
            rows.append(
                {
                    "tile": index,
                    "label_coverage": float(labelled.mean()),
                    "foreground_fraction": float((labelled & (label > 0)).mean()),
                    "valid_fraction": float(valid.mean()),
                    "class_pixels": np.bincount(label[labelled], minlength=n_classes).tolist(),
                    "unmapped": sorted(unmapped),
                    "infinite": int(infinite[_relative(core, window)].sum()),
                }
            )
    atomic_write_json(marker, rows)
    return rows


def _relative(part: Window, window: Window) -> tuple[slice, slice]:
    """The rows and columns of `part` within the array of `window` (which holds it)."""
    r, c = int(part.row_off - window.row_off), int(part.col_off - window.col_off)
    return slice(r, r + int(part.height)), slice(c, c + int(part.width))


class _ProgressCallback(Callback):
    """Advance the progress by each finished tile block (local Dask schedulers)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def _posttask(
        self, key: object, result: Any, dsk: object, state: object, worker_id: object
    ) -> None:
        if isinstance(key, str) and key.startswith("tile-block-"):
            self.progress.update(len(result))


def _run(tasks: list[Any], scheduler: str | None, progress: bool, total: int) -> list[Any]:
    """Compute Dask tasks locally or on a scheduler at an address, with tile progress."""
    with Progress(total, "tiling", "tile", enabled=progress) as bar:
        if scheduler is None or scheduler in LOCAL_SCHEDULERS:
            with _ProgressCallback(bar):
                return list(dask.compute(*tasks, scheduler=scheduler or "threads"))
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = client.compute(tasks)
            position = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(futures)
            for future, result in as_completed(futures, with_results=True):
                results[position[future.key]] = result
                if str(future.key).startswith("tile-block-"):
                    bar.update(len(result))
            return results


def _publish(partial: Path, out: Path) -> None:
    """Move the finished temporary store to `out`, replacing the tile store there (atomic
    renames; `check_tiling` refused anything else), and drop stale temporary stores of `out`
    left by interrupted runs with other settings."""
    shutil.rmtree(partial / "_progress", ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        if stale != partial:
            shutil.rmtree(stale, ignore_errors=True)
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old)
    else:
        os.rename(partial, out)
