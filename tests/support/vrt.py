"""A VRT over a copy of a bundled scene, and a change to that copy the VRT's text does not show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from tests.support.paths import NEBRASKA


def vrt_over_copy(folder: Path) -> tuple[Path, Path]:
    """A copy of the Nebraska scene and a VRT that reads it (the VRT names it by path)."""
    source, vrt = folder / "source.tif", folder / "scene.vrt"
    rasterio.shutil.copy(NEBRASKA, source)
    rasterio.shutil.copy(source, vrt, driver="VRT")
    with rasterio.open(vrt) as src:
        assert [Path(f).name for f in src.files] == ["scene.vrt", "source.tif"]
    return source, vrt


def rewrite_upside_down(source: Path) -> np.ndarray:
    """Write the source raster again with its rows reversed; returns the new pixels."""
    with rasterio.open(source) as src:
        profile, pixels = src.profile, src.read()[:, ::-1, :].copy()
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(pixels)
    return pixels
