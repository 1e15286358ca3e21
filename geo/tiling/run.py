"""Tile large scenes and their labels into a Zarr tile store with windowed reads only.

Memory stays at a few tiles per worker whatever the scene size: every task reads the tiles of a
chain of blocks (runs of neighbouring tiles, one under the other: `geo.tiling.blocks`) one at a
time, labels each tile, samples it for the band statistics and hands it to writer threads that
write it straight into the store (one tile per chunk).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.callbacks import Callback
from dask.delayed import Delayed
from dask.system import CPU_COUNT

from geo.contracts.classes import some_values, value_order
from geo.contracts.normalization import Normalization
from geo.contracts.tile_store import (
    SPLIT_NAMES,
    SceneRecord,
    StoreInfo,
    create_store,
    write_info,
    write_split,
)
from geo.errors import InputError
from geo.io.outputs import discard_on_failure, exclusive, make_folder
from geo.io.progress import Progress
from geo.io.raster import SceneInfo, fill_value, pixel_size_m
from geo.options import flag
from geo.tiling import split as splitting
from geo.tiling import stats
from geo.tiling.blocks import (
    Block,
    ChainResult,
    Job,
    plan_blocks,
    plan_chains,
    sample_tiles,
    tile_chain,
)
from geo.tiling.config import TileConfig
from geo.tiling.index import write_tile_index
from geo.tiling.inputs import TilingRequest, check_tiling
from geo.tiling.plan import footprints, plan_tiles
from geo.tiling.timing import StageSeconds

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint"  # in the progress folder: the fingerprint of the run's inputs
LOCAL_SCHEDULERS = ("threads", "processes", "sync", "synchronous", "single-threaded")


def tile_scenes(config: TileConfig, *, progress: bool = True) -> Path:
    """Tile the configured scenes and labels into the Zarr tile store `config.out`; its path.

    The store is keyed by a fingerprint of every input's sha256 and every setting. When `out`
    already holds a store with the same fingerprint (or one an older convlora-geo tiled from the
    same inputs and settings, `geo.tiling.existing`) it is returned without any work; another
    tile store there is replaced only with `overwrite`, and anything else is never touched. The
    store is built under a hidden temporary name beside `out` (`.NAME.partial-KEY`, KEY from the
    input paths and settings) and renamed when complete, so `out` never holds a partial store; a
    killed run (or one that failed for a passing reason) leaves that folder, and the next run
    with the same fingerprint resumes it, skipping finished tile blocks. A run that fails on bad
    input or a full disk removes it. Everything about the inputs is checked first
    (`check_tiling`); the inputs' checksums are computed while the tiles are written (a resumed
    run waits for them first).

    Tiles follow `GridSpec` (overlapping, last row and column on the scene edge, a scene smaller
    than a tile padded and its padding invalid); see `geo.contracts.tile_store` for the layout,
    `geo.tiling.split` for the spatial split and `geo.tiling.labels` for what is labelled.
    """
    started, seconds = time.perf_counter(), StageSeconds()
    with seconds("check"):
        request = check_tiling(config)
        out = request.out
    if request.reuse:
        log.info(
            "%s is up to date (fingerprint %s): reusing it", out, request.store_fingerprint[:12]
        )
        return out
    make_folder(out.parent)
    partial = out.parent / f".{out.name}.partial-{request.run_key[:16]}"
    with exclusive(out, "tile store"), discard_on_failure(partial, out):
        job = _Job(request, partial)
        try:
            info = job.run(config.dask_address, progress)
        finally:
            job.close()
        _warn_unmeasured(info)
        with seconds("index"):
            write_info(partial, info)
            _publish(partial, out)
    seconds.add(job.seconds)
    log.info(
        "wrote %d tile%s to %s in %.1f s (seconds per stage, summed over threads: %s)",
        info.n_tiles, "" if info.n_tiles == 1 else "s", out, time.perf_counter() - started,
        seconds.line(),
        extra={"stage_seconds": dict(seconds)},
    )  # fmt: skip
    return out


def _warn_unmeasured(info: StoreInfo) -> None:
    """Warn about classes with training pixels and none in a validation split that has
    labelled pixels: their IoU cannot be measured (the labels hold them in one block of
    tiles)."""
    train, val = info.class_pixels.get("train", ()), info.class_pixels.get("val", ())
    if not sum(val):
        return
    names = [
        c.name for c, t, v in zip(info.class_map.classes, train, val, strict=True) if t and not v
    ]
    if names:
        log.warning(
            "class(es) %s: no pixel in the validation split (the labels hold them in one "
            "place): their IoU cannot be measured; label them in more places",
            ", ".join(names),
        )


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
        tile_bytes = len(self.bands) * request.tile_size**2 * np.dtype(self.dtype).itemsize
        self.blocks = plan_blocks(self.tiles, tile_bytes)
        self.seconds = StageSeconds()  # per stage, of this run's tasks
        self.closing = threading.Lock()
        self.closed = False

    def run(self, scheduler: str | None, progress: bool) -> StoreInfo:
        """Fill the temporary store and return its StoreInfo (statistics, split, scenes...)."""
        request, seed = self.request, self.request.config.split_seed
        prints = footprints(self.tiles, self.scenes, request.tile_size - request.overlap)
        if not self._resumable():
            self._create()
        request.checksums.add_done_callback(self._note_fingerprint)
        rows, samples = self._compute(seed, scheduler, progress)
        with ThreadPoolExecutor(1, thread_name_prefix="tiling-statistics") as pool:
            statistics = pool.submit(self._summarize, samples)  # meanwhile, split and index
            classes = np.array([np.asarray(r["class_pixels"]) > 0 for r in rows], dtype=bool)
            advice = _split_advice(request.tile_size, len(self.scenes))
            split = splitting.split_labelled(
                prints, classes, request.config.val_fraction, seed, advice
            )
            with self.seconds("index"):
                write_split(self.partial, split)
                write_tile_index(self.partial, self.tiles, self.scenes, rows, split)
            normalization = statistics.result()
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
            settings=request.settings,
            inputs=tuple(request.inputs),
            pixel_size_m=_median_pixel_size(self.scenes),
        )

    def close(self) -> None:
        """Leave the temporary store alone from now on (the checksums may still be running)."""
        with self.closing:
            self.closed = True

    def _resumable(self) -> bool:
        """Whether the temporary store holds the work of an earlier run of the same fingerprint
        (this waits for the inputs' checksums)."""
        marker = self.progress_dir / FINGERPRINT_FILE
        if not (self.progress_dir / "created").exists():
            return False
        if marker.exists() and marker.read_text(encoding="utf-8") == self.request.fingerprint:
            return True
        log.info(
            "%s: not resumed (its inputs changed, or its run stopped before their checksums were "
            "known); starting over",
            self.partial,
        )
        return False

    def _note_fingerprint(self, checksums: Future[Any]) -> None:
        """Once the inputs' checksums are known (on the thread that computed them), write the
        fingerprint into the progress folder, so that a later run resumes only the same work;
        nothing when they failed (the run fails on them when it asks for the fingerprint) or the
        run has ended."""
        if checksums.exception() is not None:
            return
        with self.closing:
            if not self.closed:
                (self.progress_dir / FINGERPRINT_FILE).write_text(
                    self.request.fingerprint, encoding="utf-8"
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
    ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        """Tile the unfinished blocks through Dask, in chains, and sample the tiles that earlier
        runs wrote: (summary row, statistics sample) of every tile."""
        done = self._done_rows()
        blocks = [b for b in self.blocks if not all(t.index in done for t in b.tiles)]
        if done:
            log.info(
                "resuming %s: %d of %d tile blocks already done",
                self.partial, len(self.blocks) - len(blocks), len(self.blocks),
            )  # fmt: skip
        job = Job(
            str(self.partial), str(self.progress_dir), self.bands, self.dtype,
            self.cmap.num_classes, stats.scene_budget(len(self.scenes)), seed,
            self.request.scene_bands,
        )  # fmt: skip
        again = {t.index for b in blocks for t in b.tiles}
        tasks = self._chain_tasks(job, blocks) + self._sample_tasks(job, again)
        samples: dict[int, np.ndarray] = {}
        for result in _run(
            tasks, scheduler, progress, len(self.tiles), len(self.tiles) - len(again)
        ):
            done.update((r["tile"], r) for r in result.rows)
            samples.update(result.samples)
            self.seconds.add(result.seconds)
        rows = [done[t.index] for t in self.tiles]
        self._warn_unmapped(rows)
        self._warn_infinite(rows)
        return rows, [samples[t.index] for t in self.tiles]

    def _summarize(self, samples: list[np.ndarray]) -> Normalization:
        """The band statistics of the tiles' samples; InputError when they hold no pixel."""
        with self.seconds("statistics"):
            normalization = stats.summarize(samples)
        if normalization is None:
            raise InputError(f"{self.scenes[0].path}: no valid pixel in any scene (all nodata?)")
        return normalization

    def _chain_tasks(self, job: Job, blocks: list[Block]) -> list[Delayed]:
        """One task per chain of the blocks (`tile_chain`), each scene's labels shared."""
        labels = {
            s: dask.delayed(self.sources[s], name=f"labels-{s}", traverse=False)
            for s in {b.scene for b in blocks}
        }
        return [
            dask.delayed(tile_chain, pure=False)(
                job,
                self.scenes[chain.scene],
                labels[chain.scene],
                chain,
                dask_key_name=f"tile-chain-{chain.blocks[0].tiles[0].index}",
            )
            for chain in plan_chains(blocks)
        ]

    def _sample_tasks(self, job: Job, again: set[int]) -> list[Delayed]:
        """One task per scene that samples the statistics of the tiles earlier runs wrote, all
        but those in `again` (`sample_tiles`)."""
        earlier = [t for t in self.tiles if t.index not in again]
        return [
            dask.delayed(sample_tiles, pure=True)(
                job,
                self.scenes[s],
                [t for t in earlier if t.scene == s],
                dask_key_name=f"stats-{s}",
            )
            for s in sorted({t.scene for t in earlier})
        ]

    def _done_rows(self) -> dict[int, dict[str, Any]]:
        """The summary rows of the tiles of finished blocks (from their markers), by tile: a
        block is done when all its tiles are, whatever the blocks of the run that wrote them."""
        done: dict[int, dict[str, Any]] = {}
        for marker in sorted(self.progress_dir.glob("block-*.json")):
            done.update((r["tile"], r) for r in json.loads(marker.read_text(encoding="utf-8")))
        return done

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
                some_values(sorted(values, key=value_order), 30),
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
            tiles=self.scene_tiles[i], count=scene.count,
        )  # fmt: skip


def _split_advice(tile_size: int, n_scenes: int) -> str:
    """What gives a spatial validation split when the labelled tiles are too few for one."""
    smaller = tile_size // 2 // 16 * 16
    scenes = "more labelled scenes" if n_scenes > 1 else "more scenes"
    if smaller < 64:
        return f" ({scenes} give one)"
    return f" (smaller tiles, {flag('tile_size')} {smaller}, or {scenes} give one)"


def _median_pixel_size(scenes: list[SceneInfo]) -> float | None:
    sizes = [s for s in (pixel_size_m(scene) for scene in scenes) if s is not None]
    return float(np.median(sizes)) if sizes else None


class _ProgressCallback(Callback):
    """Advance the progress by each finished chain of tile blocks (local Dask schedulers)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def _posttask(
        self, key: object, result: Any, dsk: object, state: object, worker_id: object
    ) -> None:
        if isinstance(key, str) and key.startswith("tile-chain-"):
            self.progress.update(len(result.rows))


def _run(
    tasks: list[Delayed], scheduler: str | None, progress: bool, total: int, done: int
) -> list[ChainResult]:
    """Compute the tasks locally or on a scheduler at an address, with tile progress (`done`
    of the `total` tiles written before: by an interrupted run)."""
    with Progress(total, "tiling", "tile", enabled=progress, initial=done) as bar:
        if scheduler is None or scheduler in LOCAL_SCHEDULERS:
            with _ProgressCallback(bar):
                return _run_locally(tasks, scheduler or "threads")
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = client.compute(tasks)
            position = {f.key: i for i, f in enumerate(futures)}
            results: list[Any] = [None] * len(futures)
            for future, result in as_completed(futures, with_results=True):
                results[position[future.key]] = result
                bar.update(len(result.rows))
            return results


def _run_locally(tasks: list[Delayed], scheduler: str) -> list[ChainResult]:
    """On local threads, in a pool of this run's own: when a task fails, the run waits for the
    tasks at work to end (and drops those not started) before it removes the store they write."""
    if scheduler != "threads":
        return list(dask.compute(*tasks, scheduler=scheduler))
    pool = ThreadPoolExecutor(dask.config.get("num_workers", None) or CPU_COUNT, "tiling")
    try:
        return list(dask.compute(*tasks, scheduler="threads", pool=pool))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _publish(partial: Path, out: Path) -> None:
    """Move the finished temporary store to `out`, replacing the tile store there (atomic
    renames; `check_tiling` refused anything else), and drop stale temporary stores of `out`
    left by interrupted runs with other settings, and the store a run killed between the two
    renames had set aside."""
    shutil.rmtree(partial / "_progress", ignore_errors=True)
    for stale in [
        *out.parent.glob(f".{out.name}.partial-*"),
        *out.parent.glob(f".{out.name}.old-*"),
    ]:
        if stale != partial:
            shutil.rmtree(stale, ignore_errors=True)
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old)
    else:
        os.rename(partial, out)
