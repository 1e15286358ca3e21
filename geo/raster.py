"""Scene rasters: validated metadata and windowed reads that pad outside the scene."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geo.errors import InputError

# GDAL's block cache defaults to 5 % of RAM; a bounded cache keeps tiling memory flat.
GDAL_ENV = {"GDAL_CACHEMAX": 128, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def is_virtual(path: str) -> bool:
    """GDAL virtual paths (/vsis3/..., /vsicurl/...) and URLs: no local file to check."""
    return path.startswith("/vsi") or "://" in path


@contextmanager
def open_raster(path: str) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster with a bounded GDAL cache; rasters without georeferencing open quietly."""
    with rasterio.Env(**GDAL_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            yield src


def check_exists(path: str, what: str) -> None:
    """Raise InputError when a local input path is missing (virtual paths are checked on open)."""
    if not is_virtual(path) and not Path(path).exists():
        raise InputError(f"{path}: {what} not found")


@dataclass(frozen=True)
class SceneInfo:
    """What tiling needs to know about one scene, without its pixels (picklable)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...]
    nodata: float | None
    band_names: tuple[str, ...]

    @property
    def crs(self) -> CRS | None:
        return CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the scene in its CRS (pixel units without a CRS)."""
        return window_bounds(self.affine, Window(0, 0, self.width, self.height))

    @property
    def pixel_size(self) -> float:
        return max(abs(self.affine.a), abs(self.affine.e))


def window_bounds(transform: Affine, window: Window) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a pixel window, for any sign of the pixel size."""
    x0, y0 = transform @ (window.col_off, window.row_off)
    x1, y1 = transform @ (window.col_off + window.width, window.row_off + window.height)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def read_failed(path: str, exc: Exception, where: str = "") -> Exception:
    """The error for a failed pixel read: InputError for a local file (it is corrupt or
    truncated); a remote read may fail for a moment, so its error is kept as it is (retried)."""
    if is_virtual(path):
        return exc
    detail = str(exc.__cause__ or exc)
    for name in (path, Path(path).name):
        detail = detail.replace(f"{name}, ", "")
    return InputError(
        f"{path}: corrupt or truncated raster (read failed{where}: {detail}); re-download or "
        "re-export it"
    )


def check_readable(src: rasterio.io.DatasetReader) -> None:
    """Read the first and the last block of every band: a truncated file fails here."""
    rows, cols = src.block_shapes[0]
    last = Window(
        (src.width - 1) // cols * cols, (src.height - 1) // rows * rows, cols, rows
    ).intersection(Window(0, 0, src.width, src.height))
    for window in (Window(0, 0, min(cols, src.width), min(rows, src.height)), last):
        try:
            src.read(window=window)
        except RasterioIOError as exc:
            raise read_failed(src.name, exc) from exc


def scene_info(path: str) -> SceneInfo:
    """Read a scene's metadata, raising InputError when it is missing, not a raster, or
    truncated (its first and last blocks are read)."""
    check_exists(path, "image")
    try:
        with open_raster(path) as src:
            info = SceneInfo(
                path=path,
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                crs_wkt=src.crs.to_wkt() if src.crs else None,
                transform=tuple(src.transform)[:6],
                nodata=src.nodata,
                band_names=tuple(d or f"band_{i + 1}" for i, d in enumerate(src.descriptions)),
            )
    except RasterioIOError:
        raise InputError(f"{path}: not a raster GDAL can read") from None
    with open_raster(path) as src:
        check_readable(src)
    return info


def check_bands(scene: SceneInfo, bands: list[int]) -> None:
    """Raise InputError when a 1-based band index is outside the scene."""
    bad = [b for b in bands if not 1 <= b <= scene.count]
    if bad:
        raise InputError(
            f"{scene.path}: band {bad[0]} out of range (the scene has bands 1..{scene.count})"
        )


def read_window(
    src: rasterio.io.DatasetReader, window: Window, bands: list[int], dtype: str, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Read `bands` in `window` (which may pass the scene edge) as (C, H, W) plus a valid mask.

    Only the part inside the scene is read; the rest is `fill` and invalid. Pixels equal to a
    band's nodata, NaN, or masked by the dataset's internal mask are invalid too.
    """
    h, w = int(window.height), int(window.width)
    data = np.full((len(bands), h, w), fill, dtype=dtype)
    valid = np.zeros((h, w), dtype=bool)
    inner = window.intersection(Window(0, 0, src.width, src.height))
    r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    rows, cols = slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width))
    try:
        part = src.read(bands, window=inner)
    except RasterioIOError as exc:
        at = f" at row {int(inner.row_off)}, column {int(inner.col_off)}"
        raise read_failed(src.name, exc, at) from exc
    ok = np.ones(part.shape[1:], dtype=bool)
    for i, b in enumerate(bands):
        nodata = src.nodatavals[b - 1]
        if nodata is not None:
            ok &= ~(np.isnan(part[i]) if np.isnan(nodata) else part[i] == nodata)
        if np.issubdtype(part.dtype, np.floating):
            ok &= ~np.isnan(part[i])
    if any(rasterio.enums.MaskFlags.per_dataset in f for f in src.mask_flag_enums):
        ok &= src.dataset_mask(window=inner) > 0
    part = part.astype(dtype, copy=False)
    if not ok.all():
        part[:, ~ok] = fill
    data[:, rows, cols] = part
    valid[rows, cols] = ok
    return data, valid


def fill_value(dtype: str, nodata: float | None) -> float:
    """The value written into padding and invalid pixels: nodata when the dtype holds it, else 0."""
    if nodata is None or np.isnan(nodata):
        return 0
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(np.dtype(dtype))
        return nodata if float(nodata).is_integer() and info.min <= nodata <= info.max else 0
    return nodata
