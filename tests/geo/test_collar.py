"""A scene warped or mosaicked without a nodata value is framed by pixels 0 in every band: that
collar is no data, in the tile store and in predictions, and nothing else is."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from rasterio.warp import Resampling, calculate_default_transform, reproject

from geo.io.raster import scene_info
from geo.predict import PredictConfig, predict
from tests.support.cli import write_like
from tests.support.paths import DATA, NEBRASKA, RGB_BYTE
from tests.support.stores import tile

BUILDINGS = [{"name": "background", "id": 0}, {"name": "building", "id": 1}]


def warped_without_nodata(path: Path) -> Path:
    """The bundled Nebraska scene reprojected to UTM zone 14 as gdalwarp does without
    -dstnodata: a turned grid whose corners are filled with 0 in every band, and no nodata."""
    with rasterio.open(NEBRASKA) as src:
        crs = "EPSG:32614"
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": crs, "transform": transform, "nodata": None,
                   "width": width, "height": height}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            for band in src.indexes:
                pixels = np.zeros((height, width), dtype=src.dtypes[0])
                reproject(
                    rasterio.band(src, band), pixels, dst_transform=transform, dst_crs=crs,
                    resampling=Resampling.nearest, dst_nodata=src.nodata,
                )  # fmt: skip
                dst.write(np.where(pixels == src.nodata, 0, pixels), band)
    return path


def test_only_a_multi_band_scene_without_nodata_and_a_zero_edge_has_a_collar(
    tmp_path: Path,
) -> None:
    assert scene_info(str(warped_without_nodata(tmp_path / "warped.tif"))).collar == 0
    assert scene_info(str(write_like(RGB_BYTE, tmp_path / "rgb.tif", nodata=None))).collar == 0
    assert scene_info(str(RGB_BYTE)).collar is None  # its nodata value decides
    with rasterio.open(RGB_BYTE) as src:
        band = src.read(1)[None]
    one_band = write_like(RGB_BYTE, tmp_path / "one.tif", band, count=1, nodata=None)
    assert scene_info(str(one_band)).collar is None  # 0 may be data (heights, radar)
    naip = DATA / "naip_north_dakota_5m" / "naip_2018_crop_256.tif"
    image = write_like(naip, tmp_path / "naip.tif", nodata=None, photometric="RGB")
    assert scene_info(str(image)).collar is None  # data up to its edges


def test_a_zero_collar_is_no_data_in_the_tile_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = write_like(RGB_BYTE, tmp_path / "rgb.tif", nodata=None)
    with rasterio.open(image) as src:
        pixels = src.read()
        frame = gpd.GeoDataFrame(geometry=[shapely.box(*src.bounds).buffer(-20000)], crs=src.crs)
    frame.to_file(tmp_path / "labels.gpkg")
    collar = (pixels == 0).all(axis=0)
    assert collar.mean() > 0.2 and ((pixels == 0).any(axis=0) & ~collar).any()
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile(
            [image], [tmp_path / "labels.gpkg"], BUILDINGS, tmp_path / "rgb.zarr",
            tile_size=256, overlap=32,
        )  # fmt: skip
    assert "rgb.tif declares no nodata value and its edges are 0 in every band" in caplog.text
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["settings"]["collars"] == [0]  # a store tiled before collars is not reused
    meta = group.attrs["scenes"][0]
    for i in range(*meta["tiles"]):
        col, row, _, _ = (int(v) for v in group["window"][i])
        h, w = min(256, meta["height"] - row), min(256, meta["width"] - col)
        valid = group["valid"][i][:h, :w]
        assert np.array_equal(valid, ~collar[row : row + h, col : col + w])
        assert np.all(group["labels"][i][:h, :w][~valid] == 255)
    assert group.attrs["normalization"]["p2"][0] > 0  # statistics skip the collar


def test_a_warped_scene_is_predicted_without_its_collar(pivots_run: Path, tmp_path: Path) -> None:
    """The classes raster is nodata exactly on the collar; no polygon reaches into it."""
    image = warped_without_nodata(tmp_path / "warped.tif")
    config = PredictConfig(images=[str(image)], out=str(tmp_path / "out"), model=str(pivots_run),
                           device="cpu")  # fmt: skip
    (outputs,) = predict(config, progress=False)
    with rasterio.open(image) as src:
        collar = (src.read() == 0).all(axis=0)
    assert 0.02 < collar.mean() < 0.2
    with rasterio.open(outputs["classes"]) as out:
        classes = out.read(1)
    assert np.array_equal(classes == 255, collar)
    manifest = json.loads(Path(outputs["manifest"]).read_text())
    assert manifest["parameters"]["collar"] == 0  # outputs of a collar read as data are redone
    polygons = gpd.read_file(outputs["polygons"], layer="polygons")
    with rasterio.open(image) as src:
        shapes = rasterio.features.shapes(collar.astype(np.uint8), collar, transform=src.transform)
        frame = shapely.union_all([shapely.geometry.shape(s) for s, _ in shapes])
    assert not polygons.empty
    assert polygons.intersection(frame).area.max() < 1.0  # m²: edges may touch, none reaches in
