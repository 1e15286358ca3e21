"""A class raster (or its score raster) resampled onto another raster's pixel grid, so that
scenes predicted in neighbouring UTM zones, at another pixel size or on a shifted grid still join
one mosaic (`geo.vectorize.mosaic`).

Nearest neighbour: each output pixel takes the class id of the input pixel under its centre, so
no id is invented; boundaries move by at most half a pixel of the coarser grid. The copy is
written window by window into a tiled GeoTIFF, so memory stays bounded whatever the scene's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.dtypes import in_dtype_range
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geo.errors import InputError
from geo.io.raster import open_raster, read_failed

CHUNK = 4096  # pixels a side read and written at a time
MAX_PIXELS = 1 << 32  # a copy larger than this is no neighbouring scene
BLOCK = 512


@dataclass(frozen=True)
class TargetGrid:
    """A pixel grid: its CRS and the transform of its pixel (0, 0), unrotated."""

    crs: rasterio.crs.CRS
    transform: rasterio.Affine


def regrid(path: str, target: TargetGrid, out: Path, nodata: float) -> Path:
    """Write `path` resampled (nearest neighbour) onto `target`'s grid, over the pixels of that
    grid that its footprint touches, to `out`; pixels outside its footprint or with no data
    are `nodata` (in a wider type where the raster's cannot hold it). InputError when its
    footprint does not fit that grid (it cannot be projected there, or would take more than
    MAX_PIXELS)."""
    with open_raster(path) as src:
        cols, rows = _footprint(src, target, path)
        transform = target.transform @ rasterio.Affine.translation(cols[0], rows[0])
        width, height = cols[1] - cols[0], rows[1] - rows[0]
        if width * height > MAX_PIXELS:
            raise InputError(
                f"{path}: would take {width} x {height} pixels on the grid it joins (its area "
                "at that grid's pixel size); vectorise it on its own"
            )
        dtype = src.dtypes[0]
        if not in_dtype_range(nodata, dtype):  # an int8 raster without nodata: 255 needs int16
            dtype = np.promote_types(dtype, np.min_scalar_type(nodata)).name
        profile = {
            "driver": "GTiff", "dtype": dtype, "count": 1, "crs": target.crs,
            "transform": transform, "width": width, "height": height, "nodata": nodata,
            "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        }  # fmt: skip
        with (
            WarpedVRT(
                src, crs=target.crs, transform=transform, width=width, height=height,
                resampling=Resampling.nearest, nodata=nodata, dtype=dtype,
            ) as vrt,
            rasterio.open(out, "w", **profile) as dst,
        ):  # fmt: skip
            for row in range(0, height, CHUNK):
                for col in range(0, width, CHUNK):
                    window = Window(col, row, min(CHUNK, width - col), min(CHUNK, height - row))
                    try:
                        pixels = vrt.read(1, window=window)
                    except RasterioIOError as exc:
                        raise read_failed(path, exc, " while resampling it") from exc
                    dst.write(pixels, 1, window=window)
    return out


def _footprint(
    src: rasterio.io.DatasetReader, target: TargetGrid, path: str
) -> tuple[tuple[int, int], ...]:
    """The (first, end) columns and rows of `target`'s grid that `src`'s bounds cover."""
    bounds = transform_bounds(src.crs, target.crs, *src.bounds, densify_pts=21)
    if not all(math.isfinite(v) for v in bounds):
        raise InputError(f"{path}: its area cannot be projected into the CRS it joins")
    left, bottom, right, top = bounds
    inverse = ~target.transform
    corners = [inverse @ (x, y) for x in (left, right) for y in (bottom, top)]
    xs, ys = [c for c, _ in corners], [r for _, r in corners]
    first_col, first_row = math.floor(min(xs) + 1e-6), math.floor(min(ys) + 1e-6)
    end_col, end_row = math.ceil(max(xs) - 1e-6), math.ceil(max(ys) - 1e-6)
    return (first_col, max(end_col, first_col + 1)), (first_row, max(end_row, first_row + 1))
