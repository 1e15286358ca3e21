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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import numpy as np
import shapely
from dask.callbacks import Callback
from rasterio.windows import Window
from tqdm.auto import tqdm

from geo import split as splitting
from geo import stats
from geo.classes import IGNORE, ClassMap
from geo.errors import InputError
from geo.paths import discard_on_failure
from geo.raster import SceneInfo, fill_value, open_raster, read_window, window_bounds
from geo.store import FORMAT, TILE_INDEX, create_store, open_arrays, write_attrs
from geo.tiling_inputs import LabelSource, TilingRequest, check_tiling
from geo.windows import GridSpec

log = logging.getLogger(__name__)

BLOCK_TILES = 8  # tiles per Dask task
LOCAL_SCHEDULERS = ("threads", "processes", "sync", "synchronous", "single-threaded")


@dataclass(frozen=True)
class Tile:
    """One planned tile: its store index, scene, grid cell and pixel window."""

    index: int
    scene: int
    grid_row: int
    grid_col: int
    window: Window


def tile_scenes(
    images: Sequence[str],
    labels: Sequence[str],
    class_map: str | Path | ClassMap | list | dict,
    out: str | Path,
    *,
    tile_size: int = 1024,
    overlap: int = 128,
    bands: list[int] | None = None,
    label_field: str | None = None,
    aoi: str | None = None,
    val_fraction: float = 0.2,
    all_touched: bool = False,
    unmapped: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Tile `images` with their `labels` into the Zarr tile store `out` and return its path.

    `labels` is one vector file for all scenes or one label raster per image (same order);
    `class_map` a JSON/YAML file, its parsed content or a ClassMap (see `geo.classes`); `bands`
    1-based source band indexes (default all); `unmapped`
    ("ignore" or "background") overrides the class map's setting. `scheduler`: None runs on local
    threads, "processes"/"sync" pick another local Dask scheduler, anything else is the address of
    a Dask scheduler to join (its workers must see `out`'s folder).

    The store is keyed by a fingerprint of every input's sha256 and every setting. When `out`
    already holds a store with the same fingerprint it is returned without any work; when it holds
    anything else, InputError asks for another path unless `overwrite` is True. The store is built
    under a hidden temporary name beside `out` (`.NAME.partial-FINGERPRINT`) and renamed when
    complete, so `out` never holds a partial store; a killed run (or one that failed for a
    passing reason) leaves that folder, and the next run with the same fingerprint resumes it,
    skipping finished tile blocks. A run that fails on bad input or a full disk removes it.
    Everything about the inputs is checked first (`geo.tiling_inputs.check_tiling`).

    Tiles follow `GridSpec` (overlapping, last row and column on the scene edge, a scene smaller
    than a tile padded and its padding invalid); see `geo.store` for the layout, `geo.split` for
    the spatial train/val/buffer split and `geo.labels` for what is labelled and what is ignored.
    """
    request = check_tiling(
        images, labels, class_map, out, tile_size=tile_size, overlap=overlap, bands=bands,
        label_field=label_field, aoi=aoi, val_fraction=val_fraction, all_touched=all_touched,
        unmapped=unmapped, seed=seed, overwrite=overwrite,
    )  # fmt: skip
    out, fp = request.out, request.fingerprint
    if request.reuse:
        log.info("%s is up to date (fingerprint %s): reusing it", out, fp[:12])
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{fp[:16]}"
    with discard_on_failure(partial, out):
        job = _Job(request, tile_size, overlap, partial)
        attrs = job.run(val_fraction, seed, scheduler, progress)
        attrs.update(
            request.settings, inputs=request.inputs, fingerprint=fp,
            classes=request.cmap.to_list(), class_map=request.cmap.to_dict(),
        )  # fmt: skip
        write_attrs(partial, attrs)
        _publish(partial, out)
    log.info("wrote %d tiles to %s", attrs["n_tiles"], out)
    return out


class _Job:
    """One tiling run into a temporary store folder: plan, statistics, split, tiles, index."""

    def __init__(self, request: TilingRequest, tile_size: int, overlap: int, partial: Path) -> None:
        self.scenes, self.sources = request.scenes, request.sources
        self.bands, self.cmap = request.bands, request.cmap
        self.tile_size, self.overlap, self.partial = tile_size, overlap, partial
        self.progress_dir = partial / "_progress"
        self.dtype = str(np.result_type(*[s.dtype for s in self.scenes]))
        self.tiles = self._plan()

    def _plan(self) -> list[Tile]:
        """Every scene's grid of tiles, scene after scene; `scene_tiles` holds each range."""
        tiles: list[Tile] = []
        self.scene_tiles: list[tuple[int, int]] = []
        for s, scene in enumerate(self.scenes):
            first = len(tiles)
            grid = GridSpec(scene.width, scene.height, self.tile_size, self.overlap)
            for row, col, window in grid.windows():
                tiles.append(Tile(len(tiles), s, row, col, window))
            self.scene_tiles.append((first, len(tiles)))
        return tiles

    def footprints(self) -> list[splitting.Footprint]:
        prints = []
        step = self.tile_size - self.overlap
        for t in self.tiles:
            scene = self.scenes[t.scene]
            georef = scene.crs is not None
            prints.append(
                splitting.Footprint(
                    group=scene.crs_wkt if georef else f"scene:{t.scene}",
                    grid_row=t.grid_row,
                    grid_col=t.grid_col,
                    bounds=window_bounds(scene.affine, t.window),
                    step=step * scene.pixel_size,
                    pixel=scene.pixel_size,
                    georeferenced=georef,
                )
            )
        return prints

    def run(self, val_fraction: float, seed: int, scheduler: str | None, progress: bool) -> dict:
        """Fill the temporary store and return its attributes (statistics, split, scenes...)."""
        footprints = self.footprints()
        split, block_side = splitting.assign_splits(footprints, val_fraction, seed)
        if not (self.progress_dir / "created").exists():
            if self.partial.exists():
                shutil.rmtree(self.partial)
            index = {
                "split": split,
                "scene": np.asarray([t.scene for t in self.tiles], dtype=np.int32),
                "window": np.asarray(
                    [
                        [t.window.col_off, t.window.row_off, t.window.width, t.window.height]
                        for t in self.tiles
                    ],
                    dtype=np.int64,
                ),
            }
            fill = fill_value(self.dtype, self.scenes[0].nodata)
            create_store(
                self.partial,
                len(self.tiles),
                len(self.bands),
                self.tile_size,
                self.dtype,
                fill,
                index,
            )
            self.progress_dir.mkdir()
            (self.progress_dir / "created").touch()
        rows, (normalization, n_pixels) = self._compute(seed, scheduler, progress)
        self._write_index(rows, split, footprints)
        counts = self._class_pixels(rows, split)
        return {
            "format": FORMAT,
            "n_tiles": len(self.tiles),
            "band_names": list(self.scenes[0].band_names[b - 1] for b in self.bands),
            "dtype": self.dtype,
            "normalization": normalization,
            "normalization_sample": {
                "pixels": n_pixels,
                "window": stats.SAMPLE_WINDOW,
                "windows_per_scene": stats.WINDOWS_PER_SCENE,
            },
            "split_info": {
                "codes": splitting.SPLIT_NAMES,
                "block_side_tiles": block_side,
                "counts": {n: int((split == c).sum()) for c, n in splitting.SPLIT_NAMES.items()},
            },
            "class_pixels": counts,
            "scenes": [self._scene_attrs(i) for i in range(len(self.scenes))],
        }

    def _compute(
        self, seed: int, scheduler: str | None, progress: bool
    ) -> tuple[list[dict], tuple[dict, int]]:
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
                self.partial,
                len(done),
                len(done) + len(blocks),
            )
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
                [(t.index, t.window) for t in block],
                str(self.progress_dir / f"block-{k}.json"),
                dask_key_name=f"tile-block-{k}",
            )
            for k, block in blocks
        ]
        total = sum(len(b) for _, b in blocks)
        results = _run([*stat_tasks, *block_tasks], scheduler, progress, total)
        samples, new_rows = results[: len(stat_tasks)], results[len(stat_tasks) :]
        summary = stats.summarize(list(samples))
        if not summary[0]:
            raise InputError(f"{self.scenes[0].path}: no valid pixel in any scene (all nodata?)")
        rows = [r for k in sorted(done) for r in done[k]] + [r for block in new_rows for r in block]
        self._warn_unmapped(rows)
        return sorted(rows, key=lambda r: r["tile"]), summary

    def _blocks(self) -> list[list[Tile]]:
        blocks, current = [], []
        for t in self.tiles:
            if current and (current[0].scene != t.scene or len(current) == BLOCK_TILES):
                blocks.append(current)
                current = []
            current.append(t)
        return [*blocks, current]

    def _warn_unmapped(self, rows: list[dict]) -> None:
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
                self.sources[min(scenes)].path,
                self.cmap.unmapped,
            )

    def _class_pixels(self, rows: list[dict], split: np.ndarray) -> dict[str, list[int]]:
        counts = {
            n: np.zeros(self.cmap.num_classes, dtype=np.int64)
            for n in splitting.SPLIT_NAMES.values()
        }
        for r in rows:
            counts[splitting.SPLIT_NAMES[int(split[r["tile"]])]] += np.asarray(r["class_pixels"])
        return {n: c.tolist() for n, c in counts.items()}

    def _write_index(self, rows: list[dict], split: np.ndarray, footprints: list) -> None:
        """tile_index.gpkg: one polygon per tile in the scenes' CRS (EPSG:4326 if they differ)."""
        records, geoms = [], []
        for r, t, fp in zip(rows, self.tiles, footprints, strict=True):
            scene = self.scenes[t.scene]
            records.append(
                {
                    "tile": t.index,
                    "scene": t.scene,
                    "scene_path": scene.path,
                    "grid_row": t.grid_row,
                    "grid_col": t.grid_col,
                    "col_off": int(t.window.col_off),
                    "row_off": int(t.window.row_off),
                    "width": int(t.window.width),
                    "height": int(t.window.height),
                    "minx": fp.bounds[0],
                    "miny": fp.bounds[1],
                    "maxx": fp.bounds[2],
                    "maxy": fp.bounds[3],
                    "crs": scene.crs.to_string() if scene.crs else "",
                    "split": splitting.SPLIT_NAMES[int(split[t.index])],
                    "label_coverage": r["label_coverage"],
                    "foreground_fraction": r["foreground_fraction"],
                    "valid_fraction": r["valid_fraction"],
                }
            )
            geoms.append(shapely.box(*fp.bounds))
        crs_set = {s.crs_wkt for s in self.scenes}
        frame = gpd.GeoDataFrame(records, geometry=geoms, crs=None)
        if len(crs_set) == 1:
            frame = frame.set_crs(self.scenes[0].crs_wkt)  # None for scenes without a CRS
        else:
            parts = [
                frame[frame["scene"].map(lambda i: self.scenes[i].crs_wkt) == wkt]
                .set_crs(wkt)
                .to_crs(4326)
                for wkt in sorted(crs_set)
            ]
            frame = gpd.GeoDataFrame(
                gpd.pd.concat(parts).sort_values("tile"), geometry="geometry", crs=4326
            )
        with warnings.catch_warnings():  # scenes without a CRS give an index without one
            warnings.filterwarnings("ignore", "'crs' was not provided")
            frame.to_file(self.partial / TILE_INDEX, layer="tiles", driver="GPKG", engine="pyogrio")

    def _scene_attrs(self, i: int) -> dict[str, Any]:
        scene = self.scenes[i]
        return {
            "path": scene.path,
            "crs": scene.crs_wkt,
            "transform": list(scene.transform),
            "width": scene.width,
            "height": scene.height,
            "dtype": scene.dtype,
            "nodata": scene.nodata,
            "tiles": list(self.scene_tiles[i]),
        }


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
    tiles: list[tuple[int, Window]],
    marker: str,
) -> list[dict]:
    """Read, label and write a few tiles of one scene; returns one summary row per tile."""
    images, labels, valids = open_arrays(store)
    fill = fill_value(dtype, scene.nodata)
    rows = []
    with open_raster(scene.path) as src, source.reader() as read_labels:
        for index, window in tiles:
            data, valid = read_window(src, window, bands, dtype, fill)
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
                }
            )
    tmp = f"{marker}.{uuid.uuid4().hex}.tmp"
    Path(tmp).write_text(json.dumps(rows))
    os.replace(tmp, marker)
    return rows


class _TqdmCallback(Callback):
    """Advance a tqdm bar by each finished tile block (local Dask schedulers)."""

    def __init__(self, bar: tqdm) -> None:
        super().__init__()
        self.bar = bar

    def _posttask(
        self, key: object, result: Any, dsk: object, state: object, worker_id: object
    ) -> None:
        if isinstance(key, str) and key.startswith("tile-block-"):
            self.bar.update(len(result))


def _run(tasks: list, scheduler: str | None, progress: bool, total: int) -> list:
    """Compute Dask tasks locally or on a scheduler at an address, with a tile progress bar."""
    with tqdm(total=total, desc="tiling", unit="tile", disable=not progress) as bar:
        if scheduler is None or scheduler in LOCAL_SCHEDULERS:
            with _TqdmCallback(bar):
                return list(dask.compute(*tasks, scheduler=scheduler or "threads"))
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = client.compute(tasks)
            position = {f.key: i for i, f in enumerate(futures)}
            results: list = [None] * len(futures)
            for future, result in as_completed(futures, with_results=True):
                results[position[future.key]] = result
                if str(future.key).startswith("tile-block-"):
                    bar.update(len(result))
            return results


def _publish(partial: Path, out: Path) -> None:
    """Move the finished temporary store to `out`, replacing what was there (atomic renames),
    and drop stale temporary stores of `out` left by interrupted runs with other settings."""
    shutil.rmtree(partial / "_progress", ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        if stale != partial:
            shutil.rmtree(stale, ignore_errors=True)
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.rename(partial, out)
