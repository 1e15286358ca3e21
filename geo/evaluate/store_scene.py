"""A scene of a tile store read back from its tiles, so that evaluation runs the very prediction
code on the very pixels prediction would read from the scene's file."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from rasterio.windows import Window

from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import StoreInfo, open_arrays, read_split, read_windows
from geo.io.grid import GridSpec
from geo.io.raster import SceneInfo

CACHED_TILES = 32  # tiles kept in memory: a grid row of windows reads each tile a few times


class StoreScene:
    """Scene `index` of a tile store: pixels of any window inside it (a `WindowSource`) and its
    labels where tiles of the chosen splits lie (255 elsewhere)."""

    def __init__(self, store: StoreInfo, index: int, splits: tuple[int, ...]) -> None:
        self.store, self.record = store, store.scenes[index]
        first, last = self.record.tiles
        self.tiles = np.arange(first, last)
        boxes = read_windows(store.path)[first:last]
        self.col0, self.row0 = boxes[:, 0], boxes[:, 1]
        self.col1 = np.minimum(boxes[:, 0] + boxes[:, 2], self.record.width)
        self.row1 = np.minimum(boxes[:, 1] + boxes[:, 3], self.record.height)
        grid = GridSpec(self.record.width, self.record.height, store.tile_size, store.overlap)
        cores = [grid.core(row, col) for row, col, _ in grid.windows()]
        assert len(cores) == len(self.tiles), "the store's tiles follow the scene's grid"
        self.core_shape = [  # (rows, columns) of each tile's core inside the scene
            (min(int(c.height), int(r1 - r0)), min(int(c.width), int(c1 - c0)))
            for c, r0, r1, c0, c1 in zip(
                cores, self.row0, self.row1, self.col0, self.col1, strict=True
            )
        ]
        self.chosen = np.isin(read_split(store.path)[first:last], splits)
        self._arrays: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def has_split_tiles(self) -> bool:
        return bool(self.chosen.any())

    def info(self) -> SceneInfo:
        """The scene's grid, as prediction plans its windows over it."""
        r = self.record
        return SceneInfo(
            path=r.path, width=r.width, height=r.height, count=len(self.store.bands),
            dtype=self.store.dtype, crs_wkt=r.crs, transform=r.transform, nodata=r.nodata,
            band_names=self.store.band_names,
        )  # fmt: skip

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (C, h, w) in the store's dtype and their valid mask, assembled from tiles."""
        r0, c0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        data = np.zeros((len(self.store.bands), h, w), dtype=self.store.dtype)
        valid = np.zeros((h, w), dtype=bool)
        for k, (rows, cols, at) in self._overlaps(r0, c0, h, w, np.ones_like(self.chosen)):
            image, _, ok = self._tile(k)
            data[:, rows, cols] = image[:, at[0], at[1]]
            valid[rows, cols] = ok[at]
        return data, valid

    def labels(self, top: int, n: int) -> np.ndarray:
        """Labels (n, W) of scene rows top .. top + n: 255 outside the chosen splits' tiles."""
        out = np.full((n, self.record.width), IGNORE, dtype=np.uint8)
        for k, (rows, cols, at) in self._overlaps(top, 0, n, self.record.width, self.chosen):
            _, label, ok = self._tile(k)
            out[rows, cols] = np.where(ok[at], label[at], IGNORE)
        return out

    def tile_labels(self, k: int) -> np.ndarray:
        """Tile k's labels inside the scene, 255 where the scene has no data."""
        _, label, ok = self._tile(k)
        h, w = self.row1[k] - self.row0[k], self.col1[k] - self.col0[k]
        return np.where(ok[:h, :w], label[:h, :w], IGNORE).astype(np.uint8)

    def _overlaps(
        self, r0: int, c0: int, h: int, w: int, among: np.ndarray
    ) -> list[tuple[int, tuple[slice, slice, tuple[slice, slice]]]]:
        """(tile, (rows in the window, columns in the window, its part of the tile)) for every
        chosen tile that meets the window."""
        meet = among & (self.row0 < r0 + h) & (self.row1 > r0) & (self.col0 < c0 + w)
        meet &= self.col1 > c0
        found = []
        for k in np.flatnonzero(meet):
            top, bottom = max(r0, self.row0[k]), min(r0 + h, self.row1[k])
            left, right = max(c0, self.col0[k]), min(c0 + w, self.col1[k])
            at = (slice(top - self.row0[k], bottom - self.row0[k]),
                  slice(left - self.col0[k], right - self.col0[k]))  # fmt: skip
            found.append((int(k), (slice(top - r0, bottom - r0), slice(left - c0, right - c0), at)))
        return found

    def _tile(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tile k's image, labels and valid mask (the reader thread and the caller share it)."""
        with self._lock:
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
            if self._arrays is None:
                self._arrays = open_arrays(self.store.path, mode="r")
            index = int(self.tiles[k])
            images, labels, valid = self._arrays
            tile = (np.asarray(images[index]), np.asarray(labels[index]), np.asarray(valid[index]))
            self._cache[k] = tile
            if len(self._cache) > CACHED_TILES:
                self._cache.popitem(last=False)
            return tile

    def close(self) -> None:
        self._cache.clear()
