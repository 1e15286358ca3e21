"""Reading a scene's windows for the model: selected bands, reflect-padded, normalised.

Pixels come from a `WindowSource`: the scene's raster file (`RasterWindows`) for prediction, or
anything else that returns the same pixels (evaluation reads a tile store's tiles of a scene).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np
from rasterio.windows import Window

from geo.io.normalize import normalize
from geo.io.raster import fill_value, open_raster, read_window
from geo.predict.scene import Scene


class WindowSource(Protocol):
    """Pixels (C, h, w) and valid mask (h, w) of a window inside the scene."""

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class RasterWindows:
    """The scene's bands read from its raster; opened by the thread that first reads."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._open: AbstractContextManager[Any] | None = None
        self._src: Any = None

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        if self._src is None:
            self._open = open_raster(self.scene.info.path)
            self._src = self._open.__enter__()
        info = self.scene.info
        fill = fill_value(info.dtype, info.nodata)
        data, valid, _ = read_window(
            self._src, info.in_file(window), self.scene.bands, info.dtype, fill, info.collar
        )
        return data, valid

    def close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = self._src = None


class TileReader:
    """Reads batches of windows, reflect-padded where they pass the scene edge, as normalised
    float32 (B, C, T, T) plus valid masks (B, T, T). Its source is used from the thread that
    first calls it, which must also call `close`."""

    def __init__(self, scene: Scene, source: WindowSource | None = None) -> None:
        self.scene = scene
        self.source = source or RasterWindows(scene)

    def __call__(self, windows: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self._read(row, col) for row, col in windows]
        data = np.stack([p[0] for p in pairs])
        valid = np.stack([p[1] for p in pairs])
        norm = self.scene.normalization
        return np.asarray(normalize(data, norm.mean, norm.std, valid)), valid

    def _read(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        info, plan = self.scene.info, self.scene.plan
        size, m = plan.tile_size, plan.margin
        r0, c0 = row - m, col - m  # padded offsets to scene pixels
        (c_min, r_min), (width, height) = info.offset, info.file_extent
        # a cut of a larger raster reads real pixels past its edges, where the file has them
        top, left = max(r0, -r_min), max(c0, -c_min)
        bottom, right = min(r0 + size, height - r_min), min(c0 + size, width - c_min)
        data, valid = self.source.read(Window(left, top, right - left, bottom - top))
        pads = ((top - r0, r0 + size - bottom), (left - c0, c0 + size - right))
        if any(p for pair in pads for p in pair):
            data = np.pad(data, ((0, 0), *pads), mode="reflect")
            valid = np.pad(valid, pads, mode="reflect")
        return data, valid

    def close(self) -> None:
        self.source.close()
