"""Cloud-Optimised GeoTIFFs, written from raw row files by GDAL's COG driver.

The COG driver streams from its source and builds overviews with a bounded block cache, so a
scene-sized raster never sits in memory. No timestamps are written: the same pixels give the same
bytes, which makes an interrupted-and-resumed prediction identical to an uninterrupted one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

BLOCK = 512
# GDAL settings for writing: a small block cache (rasterio passes GDAL_CACHEMAX in bytes; the
# earlier value 64 meant 64 bytes), no .aux.xml side files.
WRITE_ENV = {"GDAL_CACHEMAX": 16 * 2**20, "GDAL_PAM_ENABLED": "NO"}


def raw_to_cog(
    raw: Path,
    dest: Path,
    profile: dict[str, Any],
    *,
    resampling: str,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> None:
    """Write a uint8 raw row-major file of `profile`'s width x height as a COG at `dest`.

    `profile` holds width, height, crs, transform and nodata; `resampling` names the overview
    resampling (NEAREST or MODE for classes, AVERAGE for scores); `description` names the band
    (GIS tools show it instead of "Band 1"); `tags` are dataset metadata (`gdalinfo` lists
    them). A tiled GeoTIFF is staged beside `dest` and removed afterwards. A grid without
    georeferencing (the identity transform, no CRS) is written as it is, without rasterio's
    warning.
    """
    width, height = profile["width"], profile["height"]
    stage = dest.with_name(dest.name + ".stage.tif")
    options = {k: profile[k] for k in ("crs", "transform", "nodata")}
    with rasterio.Env(**WRITE_ENV), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with (
            rasterio.open(
                stage, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                tiled=True, blockxsize=BLOCK, blockysize=BLOCK, **options,
            ) as dst,
            open(raw, "rb") as src,
        ):  # fmt: skip
            if colormap:  # before any pixel: libtiff cannot change the photometric tag later
                dst.write_colormap(1, colormap)
            if description:
                dst.set_band_description(1, description)
            if tags:
                dst.update_tags(**tags)
            for row in range(0, height, BLOCK):
                n = min(BLOCK, height - row)
                rows = np.fromfile(src, dtype=np.uint8, count=n * width, offset=0)
                dst.write(rows.reshape(n, width), 1, window=Window(0, row, width, n))
        rasterio.shutil.copy(
            stage,
            dest,
            driver="COG",
            BLOCKSIZE=BLOCK,
            COMPRESS="DEFLATE",
            OVERVIEW_RESAMPLING=resampling,
            BIGTIFF="IF_SAFER",
        )
    stage.unlink()
