"""Cloud mask assets (`geo.ingest.stac.clouds`): each kind's lookup table, read by GDAL as a VRT's
mask over a raster holding every value the asset can hold, and which asset `--cloud-mask` takes.
Ingest runs with them: tests/geo/test_ingest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geo.errors import InputError
from geo.ingest.stac.clouds import (
    HLS_FMASK,
    LANDSAT_QA,
    SCENE_CLASSIFICATION,
    MaskKind,
    cloud_mask,
    kind_of,
)
from geo.ingest.stac.items import StacAsset, StacItem
from geo.io.vrt import Band, Source, write_vrt


def gdal_mask(kind: MaskKind, dtype: str, tmp_path: Path) -> np.ndarray:
    """GDAL's mask (0 or 255) for each value 0..2^bits - 1 of the kind, stored as `dtype` (a
    signed type holds the same bits), through a VRT's mask band."""
    values = np.arange(1 << kind.bits)
    side = int(np.ceil(np.sqrt(values.size)))
    grid = np.zeros(side * side, dtype)
    grid[: values.size] = values.astype(f"u{np.dtype(dtype).itemsize}").view(dtype)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 1, "dtype": dtype,
               "crs": "EPSG:32614", "transform": from_origin(0, side * 30, 30, 30)}  # fmt: skip
    with rasterio.open(tmp_path / "values.tif", "w", **profile) as dst:
        dst.write(grid.reshape(side, side), 1)
    source = Source(str(tmp_path / "values.tif"), 1, side, side, dtype, (side, 1),
                    (0, 0, side, side), "nearest", lut=kind.lut(dtype))  # fmt: skip
    vrt = write_vrt(tmp_path / "masked.vrt", width=side, height=side, crs_wkt="EPSG:32614",
                    transform=(0, 30, 0, side * 30, 0, -30), bands=[Band("values", dtype)],
                    mask=source)  # fmt: skip
    with rasterio.open(vrt) as src:
        return src.read_masks(1).ravel()[: values.size]


def test_scene_classification_masks_clouds_shadows_cirrus_and_no_data(tmp_path: Path) -> None:
    mask = gdal_mask(SCENE_CLASSIFICATION, "uint8", tmp_path)
    assert [code for code in range(12) if mask[code] == 0] == [0, 1, 3, 8, 9, 10]
    kept = [2, 4, 5, 6, 7, 11]  # dark, vegetation, not vegetated, water, unclassified, snow
    assert set(mask[kept]) == {255}


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_landsat_qa_masks_fill_dilated_cloud_cirrus_cloud_and_shadow(
    dtype: str, tmp_path: Path
) -> None:
    """Every one of the 65,536 QA_PIXEL values: valid exactly when none of bits 0-4 is set,
    whatever the confidence bits (8-15), snow (5), clear (6) or water (7) say; the same bits
    stored as int16 (55052, high confidence cloud, as -10484) mean the same."""
    mask = gdal_mask(LANDSAT_QA, dtype, tmp_path)
    values = np.arange(65536)
    np.testing.assert_array_equal(mask == 255, (values & 0b11111) == 0)
    assert mask[21824] == mask[21952] == mask[30048] == 255  # clear land, water, snow
    assert not mask[[1, 21826, 54596, 22280, 23888]].any()  # fill, dilated, cirrus, cloud, shadow


def test_hls_fmask_masks_cirrus_cloud_its_surroundings_shadow_and_fill(tmp_path: Path) -> None:
    mask = gdal_mask(HLS_FMASK, "uint8", tmp_path)
    values = np.arange(256)
    np.testing.assert_array_equal(mask == 255, (values & 0b1111) == 0)
    assert mask[0] == mask[16] == mask[32] == mask[64 + 32] == mask[128 + 64] == 255
    assert not mask[[1, 2, 4, 8, 255]].any()  # cirrus, cloud, adjacent, shadow, fill


def item_with(*keys: str) -> StacItem:
    assets = {k: StacAsset(k, f"/data/{k}.tif", categorical=True) for k in keys}
    time = "2020-07-15T17:30:00Z"
    return StacItem("L1", "landsat-c2-l2", time, time, None, None, assets=assets)


def test_which_asset_masks_the_clouds() -> None:
    assert [kind_of(k) for k in ("scl", "SCL", "SCL_20m", "qa_pixel", "QA_PIXEL", "Fmask")] == [
        SCENE_CLASSIFICATION, SCENE_CLASSIFICATION, SCENE_CLASSIFICATION, LANDSAT_QA,
        LANDSAT_QA, HLS_FMASK,
    ]  # fmt: skip
    assert [kind_of(k) for k in ("qa_radsat", "qa", "disclaimer", "red")] == [None] * 4
    landsat = item_with("red", "qa_radsat", "qa_pixel")
    found = cloud_mask(landsat, None)
    assert found is not None and (found.asset.key, found.kind) == ("qa_pixel", LANDSAT_QA)
    assert cloud_mask(landsat, "none") is None
    assert cloud_mask(item_with("red", "green"), None) is None  # nothing to mask by: predicted
    with pytest.raises(InputError) as exc:
        cloud_mask(landsat, "qa_radsat")
    assert str(exc.value) == (
        "--cloud-mask qa_radsat: not a cloud mask asset this tool reads; it reads assets whose "
        "key holds scl: Sentinel-2 scene classification; qa_pixel: Landsat Collection 2 QA bit "
        "flags; fmask: HLS Fmask bit flags"
    )
