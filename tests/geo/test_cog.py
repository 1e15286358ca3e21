"""COG writing from raw row files, and the COG layout check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from geo.io.cog import raw_to_cog
from tests.support.cog import validate_cog
from tests.support.paths import FTW, RGB_BYTE


def test_validate_cog_accepts_gdal_cogs_and_rejects_plain_geotiffs(tmp_path: Path) -> None:
    cog = tmp_path / "rgb_cog.tif"
    rasterio.shutil.copy(RGB_BYTE, cog, driver="COG", BLOCKSIZE=256)
    assert validate_cog(cog) == []
    assert "the full-resolution image is not tiled" in validate_cog(RGB_BYTE)
    # FTW's stack is tiled but has no overviews or ghost header
    assert len(validate_cog(FTW)) == 1 and "ghost header" in validate_cog(FTW)[0]
    big_tiff = tmp_path / "big.tif"
    rasterio.shutil.copy(RGB_BYTE, big_tiff, driver="COG", BLOCKSIZE=256, BIGTIFF="YES")
    assert validate_cog(big_tiff) == []


def test_raw_rows_become_an_identical_cog(tmp_path: Path) -> None:
    with rasterio.open(RGB_BYTE) as src:
        band = src.read(1)
        profile = {"width": src.width, "height": src.height, "crs": src.crs,
                   "transform": src.transform, "nodata": 0}  # fmt: skip
    raw = tmp_path / "band.u8"
    band.tofile(raw)
    digests = []
    for name in ("a.tif", "b.tif"):
        raw_to_cog(raw, tmp_path / name, profile, resampling="AVERAGE",
                   colormap={1: (255, 0, 0, 255)})  # fmt: skip
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]  # deterministic bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "band.u8"]
    with rasterio.open(tmp_path / "a.tif") as out:
        np.testing.assert_array_equal(out.read(1), band)
        assert out.colormap(1)[1] == (255, 0, 0, 255)
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert validate_cog(tmp_path / "a.tif") == []
