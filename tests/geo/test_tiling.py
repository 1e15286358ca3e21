"""Tiling the bundled real scenes into tile stores: labels, layout, split, reuse and errors."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import xarray as xr
import yaml
import zarr

from flows.commands.tile import NO_LABELS, store_lines
from geo.errors import InputError
from geo.finetune.dataset import IGNORE, TileDataset
from tests.support.cli import run_cli
from tests.support.stores import tile

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
ATLANTA = DATA / "spacenet_atlanta_buildings"
ALEXANDRIA = DATA / "alexandria_lidar_buildings"
PIVOTS = DATA / "nebraska_center_pivots_landsat"
AGNET = DATA / "agnet_landsat8_cdl"
AGNET_IMAGES = sorted(str(p) for p in (AGNET / "images").glob("*.tif"))
AGNET_LABELS = sorted(str(p) for p in (AGNET / "labels").glob("*.tif"))
BUILDINGS = str(ROOT / "examples" / "buildings_classes.yaml")
PIVOT_CLASSES = str(ROOT / "examples" / "pivots_classes.yaml")
AGNET_CLASSES = str(ROOT / "examples" / "agnet_classes.yaml")
CASES = {
    "atlanta": (ATLANTA / "atlanta_pan_0p5m.tif", ATLANTA / "atlanta_buildings.geojson",
                ATLANTA / "atlanta_buildings_mask.tif", BUILDINGS, "building"),
    "alexandria": (ALEXANDRIA / "hag.tif", ALEXANDRIA / "buildings.geojson",
                   ALEXANDRIA / "buildings_mask.tif", BUILDINGS, None),
    "pivots": (PIVOTS / "nebraska_landsat_albers_30m.tif", PIVOTS / "pivots.gpkg",
               PIVOTS / "pivots_mask.tif", PIVOT_CLASSES, None),
}  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One store per bundled labelled dataset (small tiles so that each scene has several)."""
    out = tmp_path_factory.mktemp("stores")
    built = {}
    for name, (image, labels, _, classes, field) in CASES.items():
        built[name] = tile(
            [str(image)], [str(labels)], classes, out / f"{name}.zarr",
            tile_size=128, overlap=16, label_field=field,
        )  # fmt: skip
    built["agnet"] = tile(
        AGNET_IMAGES, AGNET_LABELS, AGNET_CLASSES, out / "agnet.zarr",
        tile_size=128, overlap=0,
    )  # fmt: skip
    return built


SMALL_TILES = ("--tile-size", "128", "--overlap", "16")  # several tiles per bundled scene


def scene_labels(store: Path, scene: int = 0) -> np.ndarray:
    """A scene's label raster rebuilt from its (overlapping, agreeing) tiles."""
    group = zarr.open_group(str(store), mode="r")
    meta = group.attrs["scenes"][scene]
    out = np.full((meta["height"], meta["width"]), 254, dtype=np.uint8)
    for i in range(*meta["tiles"]):
        col, row, width, height = (int(v) for v in group["window"][i])
        h, w = min(height, meta["height"] - row), min(width, meta["width"] - col)
        tile = group["labels"][i][:h, :w]
        seen = out[row : row + h, col : col + w]
        assert np.all((seen == 254) | (seen == tile)), "overlapping tiles disagree"
        out[row : row + h, col : col + w] = tile
    assert not np.any(out == 254)
    return out


def pivot_mask_as(path: Path, codes: Callable[[np.ndarray], np.ndarray]) -> Path:
    """The bundled pivot mask (1 pivot, 0 other) written to `path` with its codes changed."""
    with rasterio.open(CASES["pivots"][2]) as src:
        profile, pixels = src.profile, src.read(1)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(codes(pixels).astype("uint8"), 1)
    return path


def read_band(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(band)


@pytest.mark.parametrize("name", sorted(CASES))
def test_store_labels_match_reference_masks(stores: dict[str, Path], name: str) -> None:
    labels, ref = scene_labels(stores[name]), read_band(CASES[name][2])
    ours, theirs = labels == 1, ref == 1
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou >= 0.99, f"{name}: IoU {iou:.4f} with the reference mask"
    assert np.all(labels[ref == 1] == 1)
    assert set(np.unique(labels)) <= {0, 1, 255}


def test_incomplete_labels_are_ignored_outside_their_extent(stores: dict[str, Path]) -> None:
    labels = scene_labels(stores["pivots"])
    assert np.all(labels[:, :100] == 255)  # west: nothing outlined, so nothing taught
    assert (labels == 0).sum() > (labels == 1).sum() > 0


def test_agnet_label_rasters_without_crs(stores: dict[str, Path]) -> None:
    group = zarr.open_group(str(stores["agnet"]), mode="r")
    classes = yaml.safe_load(Path(AGNET_CLASSES).read_text())["classes"]
    lut = np.full(256, 255, dtype=np.uint8)
    for i, c in enumerate(classes):
        lut[c.get("values", [])] = i
    assert group["images"].shape == (44, 7, 128, 128) and group["images"].dtype == np.int16
    for i, (image, label) in enumerate(zip(AGNET_IMAGES, AGNET_LABELS, strict=True)):
        with rasterio.open(image) as src:
            assert np.array_equal(group["images"][i], src.read())
        assert np.array_equal(group["labels"][i], lut[read_band(Path(label))])
    split = group["split"][:]
    assert set(split) == {0, 1} and 5 <= (split == 1).sum() <= 13  # by scene, about 20 %
    index = gpd.read_file(stores["agnet"] / "tile_index.gpkg", layer="tiles")
    assert index.crs is None and len(index) == 44


def test_store_layout_opens_with_zarr_xarray_and_geopandas(stores: dict[str, Path]) -> None:
    store = stores["pivots"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tile_index.gpkg in the folder, consolidated metadata
        group = zarr.open_group(str(store), mode="r")
        assert sorted(group.keys()) == ["images", "labels", "scene", "split", "valid", "window"]
        ds = xr.open_zarr(store)
    n = group["images"].shape[0]
    assert group["images"].shape == (n, 3, 128, 128) and group["images"].dtype == np.int16
    assert group["images"].chunks == (1, 3, 128, 128) and group["labels"].chunks == (1, 128, 128)
    assert group["labels"].dtype == np.uint8 and group["valid"].dtype == bool
    assert group["split"].shape == (n,) and group["split"].dtype == np.uint8
    assert group["images"].compressors, "tiles are compressed"
    attrs = dict(group.attrs)
    for key in ("classes", "bands", "band_names", "normalization", "tile_size", "overlap",
                "inputs", "fingerprint", "class_map", "scenes"):  # fmt: skip
        assert key in attrs, key
    assert attrs["classes"] == [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "pivot", "color": "#e31a1c"},
    ]
    assert attrs["bands"] == [1, 2, 3] and attrs["tile_size"] == 128 and attrs["overlap"] == 16
    assert sorted(attrs["normalization"]) == ["mean", "p2", "p98", "std"]
    assert all(len(v) == 3 for v in attrs["normalization"].values())
    roles = [r["role"] for r in attrs["inputs"]]
    assert roles == ["image", "labels", "class_map"]
    assert all(len(r["sha256"]) == 64 for r in attrs["inputs"])
    assert ds["images"].dims == ("tile", "band", "y", "x") and ds.sizes["tile"] == n
    assert int(ds["labels"].isel(tile=0).max()) <= 255
    index = gpd.read_file(store / "tile_index.gpkg", layer="tiles")
    with rasterio.open(CASES["pivots"][0]) as src:
        assert index.crs == src.crs  # the custom Albers CRS, no EPSG code
    assert len(index) == n and set(index["split"]) <= {"train", "val", "buffer"}
    assert {"scene", "col_off", "row_off", "label_coverage", "crs"} <= set(index.columns)
    assert index.geometry.iloc[0].bounds == pytest.approx(
        (index.minx[0], index.miny[0], index.maxx[0], index.maxy[0])
    )
    with sqlite3.connect(store / "tile_index.gpkg") as db:  # GeoPackage 1.2: QGIS 3.22 too
        assert db.execute("PRAGMA user_version").fetchone() == (10200,)
        (style,) = db.execute("SELECT f_table_name, useAsDefault, styleQML FROM layer_styles")
    assert style[:2] == ("tiles", 1)  # QGIS draws the tiles by split, nearly clear, outlined
    renderer = ET.fromstring(style[2]).find("renderer-v2")
    assert renderer is not None and renderer.get("attr") == "split"
    assert {c.get("value") for c in renderer.iter("category")} == set(index["split"])


def test_alexandria_index_is_in_the_scene_crs(stores: dict[str, Path]) -> None:
    index = gpd.read_file(stores["alexandria"] / "tile_index.gpkg", layer="tiles")
    assert index.crs.to_epsg() == 26918  # labels were EPSG:4326, the scene is not


@pytest.mark.parametrize("name", ["atlanta", "alexandria", "pivots", "agnet"])
def test_training_never_sees_a_validation_pixel(stores: dict[str, Path], name: str) -> None:
    """Tiles overlap, so a training tile may share pixels with a validation tile: the training
    dataset leaves those pixels' labels out (and keeps every other labelled pixel)."""
    index = gpd.read_file(stores[name] / "tile_index.gpkg", layer="tiles")
    train, val = index[index.split == "train"], index[index.split == "val"]
    assert len(train) and len(val)
    dataset = TileDataset(stores[name], "train")
    labels = zarr.open_group(str(stores[name]), mode="r")["labels"]
    shared_pixels = 0
    for i, store_index in enumerate(dataset.indices):
        t = index.iloc[store_index]
        held = np.zeros((t.height, t.width), dtype=bool)
        for _, v in val[val.scene == t.scene].iterrows():
            rows = slice(max(v.row_off - t.row_off, 0), max(v.row_off + v.height - t.row_off, 0))
            cols = slice(max(v.col_off - t.col_off, 0), max(v.col_off + v.width - t.col_off, 0))
            held[rows, cols] = True
        item = dataset[i]
        label, valid = item["label"].numpy(), item["valid"].numpy()
        stored = np.asarray(labels[store_index])
        assert (label[held] == IGNORE).all(), f"training tile {t.tile} teaches validation pixels"
        kept = ~held & valid & (stored != IGNORE)
        assert (label[kept] == stored[kept]).all()
        shared_pixels += int((held & (stored != IGNORE)).sum())
    if name != "agnet":  # AgNet is tiled without overlap; the others share pixels
        assert shared_pixels > 0


def test_statistics_cover_all_pixels_of_small_scenes(stores: dict[str, Path]) -> None:
    """AgNet's 44 scenes fit the sample budget, so the statistics cover every pixel: mean and
    std of each band clipped to its 0.1-99.9 percentile range, percentiles of the raw values."""
    stats = zarr.open_group(str(stores["agnet"]), mode="r").attrs["normalization"]
    pixels = np.concatenate(
        [rasterio.open(p).read().reshape(7, -1) for p in AGNET_IMAGES], axis=1
    ).astype(np.float64)
    low, high = np.percentile(pixels, [0.1, 99.9], axis=1)
    clipped = np.clip(pixels, low[:, None], high[:, None])
    assert stats["mean"] == pytest.approx(clipped.mean(axis=1).tolist())
    assert stats["std"] == pytest.approx(clipped.std(axis=1).tolist())
    assert stats["p2"] == pytest.approx(np.percentile(pixels, 2, axis=1).tolist())
    assert stats["mean"] != pytest.approx(pixels.mean(axis=1).tolist(), rel=1e-6)


def test_rerun_reuses_the_store_and_changes_need_a_new_one(stores: dict[str, Path]) -> None:
    image, labels, _, classes, _ = CASES["alexandria"]
    store = stores["alexandria"]
    stamp = (store / "zarr.json").stat().st_mtime_ns
    again = tile([str(image)], [str(labels)], classes, store, tile_size=128, overlap=16)
    assert again == store and (store / "zarr.json").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="write the new store elsewhere or pass --overwrite"):
        tile([str(image)], [str(labels)], classes, store, tile_size=128, overlap=32)
    assert not [p for p in store.parent.iterdir() if p.name.startswith(".")]  # no partial store


def test_overwrite_replaces_a_store(tmp_path: Path) -> None:
    image, labels, _, classes, _ = CASES["alexandria"]
    out = tmp_path / "s.zarr"
    first = tile([str(image)], [str(labels)], classes, out, tile_size=128, overlap=0)
    fp = zarr.open_group(str(first), mode="r").attrs["fingerprint"]
    tile(
        [str(image)],
        [str(labels)],
        classes,
        out,
        tile_size=64,
        overlap=0,
        overwrite=True,
    )
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["fingerprint"] != fp and group["labels"].shape[1:] == (64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_scene_smaller_than_a_tile_is_padded_and_marked_invalid(tmp_path: Path) -> None:
    store = tile(
        AGNET_IMAGES[:2], AGNET_LABELS[:2], AGNET_CLASSES, tmp_path / "pad.zarr",
        tile_size=256, overlap=0, val_fraction=0,
    )  # fmt: skip
    group = zarr.open_group(str(store), mode="r")
    assert group["images"].shape == (2, 7, 256, 256)
    valid, labels, image = group["valid"][0], group["labels"][0], group["images"][0]
    assert valid[:128, :128].all() and not valid[128:].any() and not valid[:, 128:].any()
    assert np.all(labels[~valid] == 255) and np.all(image[:, ~valid] == 0)
    assert set(group["split"][:]) == {0}


def test_nodata_pixels_are_invalid_and_ignored(tmp_path: Path) -> None:
    """RGB.byte.tif has a nodata (0) collar around the rotated Landsat footprint."""
    image = DATA / "landsat7_rgb_byte" / "RGB.byte.tif"
    with rasterio.open(image) as src:
        frame = gpd.GeoDataFrame(
            {"kind": ["island"]}, geometry=[shapely.box(*src.bounds).buffer(-20000)], crs=src.crs
        )
        nodata = (src.read() == 0).any(axis=0)
    frame.to_file(tmp_path / "labels.gpkg")
    store = tile(
        [str(image)], [str(tmp_path / "labels.gpkg")], BUILDINGS, tmp_path / "rgb.zarr",
        tile_size=256, overlap=32,
    )  # fmt: skip
    group = zarr.open_group(str(store), mode="r")
    meta = group.attrs["scenes"][0]
    for i in range(*meta["tiles"]):
        col, row, _, _ = (int(v) for v in group["window"][i])
        valid = group["valid"][i][: meta["height"] - row, : meta["width"] - col]
        expected = ~nodata[row : row + 256, col : col + 256]
        assert np.array_equal(valid, expected)
        assert np.all(group["labels"][i][: valid.shape[0], : valid.shape[1]][~valid] == 255)
    assert group.attrs["normalization"]["p2"][0] > 0  # statistics skip the nodata collar


def test_an_alpha_band_masks_pixels_and_is_not_tiled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An RGBA GeoTIFF (drone orthomosaics, QGIS exports): its alpha band is the valid mask."""
    with rasterio.open(DATA / "landsat7_rgb_byte" / "RGB.byte.tif") as src:
        rgb, profile = src.read(), src.profile
    alpha = np.where((rgb == 0).any(axis=0), 0, 255).astype(np.uint8)
    profile.update(count=4, nodata=None, photometric="RGB", alpha="YES")
    with rasterio.open(tmp_path / "rgba.tif", "w", **profile) as dst:
        dst.write(np.concatenate([rgb, alpha[None]]))
    with rasterio.open(tmp_path / "rgba.tif") as src:
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        frame = gpd.GeoDataFrame(geometry=[shapely.box(*src.bounds).buffer(-20000)], crs=src.crs)
    frame.to_file(tmp_path / "labels.gpkg")
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile(
            [tmp_path / "rgba.tif"], [tmp_path / "labels.gpkg"], BUILDINGS,
            tmp_path / "rgba.zarr", tile_size=256, overlap=32,
        )  # fmt: skip
    assert "band 4 of" in caplog.text and "is an alpha band" in caplog.text
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["bands"] == [1, 2, 3]
    assert group.attrs["band_colors"] == ["red", "green", "blue"]
    meta = group.attrs["scenes"][0]
    for i in range(*meta["tiles"]):
        col, row, _, _ = (int(v) for v in group["window"][i])
        h, w = min(256, meta["height"] - row), min(256, meta["width"] - col)
        shown = alpha[row : row + h, col : col + w] > 0
        assert np.array_equal(group["valid"][i][:h, :w], shown)
        expected = rgb[:, row : row + h, col : col + w] * shown  # transparent pixels are 0
        assert np.array_equal(group["images"][i][:, :h, :w], expected)


def test_a_fourth_band_tagged_alpha_that_holds_image_values_is_tiled(tmp_path: Path) -> None:
    """GDAL tags the 4th band of a 4-band 8-bit GeoTIFF written without PHOTOMETRIC as alpha: a
    NAIP R,G,B,NIR crop saved so keeps its NIR as a band."""
    naip = DATA / "naip_north_dakota_5m" / "naip_2018_crop_256.tif"
    with rasterio.open(naip) as src:
        data, profile = src.read(), src.profile
    for nodata in (0, None):
        copy = tmp_path / f"naip_{nodata}.tif"
        with rasterio.open(copy, "w", **{**profile, "nodata": nodata}) as dst:
            dst.write(data)
        with rasterio.open(copy) as src:
            assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha  # as GDAL tags it
            frame = gpd.GeoDataFrame(geometry=[shapely.box(*src.bounds).buffer(-200)], crs=src.crs)
        frame.to_file(tmp_path / "labels.gpkg")
        store = tile(
            [copy], [tmp_path / "labels.gpkg"], BUILDINGS, tmp_path / f"naip_{nodata}.zarr",
            tile_size=128, overlap=16,
        )  # fmt: skip
        group = zarr.open_group(str(store), mode="r")
        assert group.attrs["bands"] == [1, 2, 3, 4]
        assert np.array_equal(group["images"][0][3], data[3, :128, :128])


def test_band_selection_and_aoi(tmp_path: Path) -> None:
    image, labels, _, classes, _ = CASES["pivots"]
    with rasterio.open(image) as src:
        aoi = shapely.box(
            src.bounds.left + 200 * 30,
            src.bounds.bottom,
            src.bounds.right,
            src.bounds.top - 100 * 30,
        )
        gpd.GeoDataFrame(geometry=[aoi], crs=src.crs).to_file(tmp_path / "aoi.gpkg")
        bands = src.read([3, 1])
    store = tile(
        [str(image)], [str(labels)], classes, tmp_path / "aoi.zarr", tile_size=512, overlap=0,
        bands=[3, 1], aoi=str(tmp_path / "aoi.gpkg"), val_fraction=0,
    )  # fmt: skip
    group = zarr.open_group(str(store), mode="r")
    assert np.array_equal(group["images"][0], bands)
    assert group.attrs["bands"] == [3, 1] and len(group.attrs["normalization"]["mean"]) == 2
    labels_ = group["labels"][0]
    assert np.all(labels_[:, :200] == 255) and np.all(labels_[:100] == 255)
    assert np.all(labels_[100:, 200:] != 255)  # inside the AOI everything is labelled
    assert [r["role"] for r in group.attrs["inputs"]] == ["image", "labels", "class_map", "aoi"]


def test_unmapped_codes_become_background_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="geo"):
        store = tile(
            AGNET_IMAGES[:3], AGNET_LABELS[:3], AGNET_CLASSES, tmp_path / "bg.zarr",
            tile_size=128, overlap=0, unmapped="background",
        )  # fmt: skip
    assert "no CRS" in caplog.text
    group = zarr.open_group(str(store), mode="r")
    assert not np.any(group["labels"][:] == 255)
    assert group.attrs["class_map"]["unmapped"] == "background"


def _class_map_file(tmp_path: Path) -> str:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps([{"name": "background"}, {"name": "building"}]))
    return str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": ["missing.tif"]}, "missing.tif: image not found"),
        ({"images": [BUILDINGS]}, "not a raster GDAL can read"),
        ({"bands": [2]}, "band 2 out of range"),
        ({"tile_size": 100}, "multiple of 16"),
        ({"overlap": 64}, "less than half the tile size"),
        ({"val_fraction": 1.0}, "--val-fraction 1.0: Input should be less than 1"),
        ({"labels": [str(ATLANTA / "atlanta_buildings.geojson")]}, "no features overlap scene"),
        (
            {"labels": [str(ATLANTA / "atlanta_buildings.geojson")] * 2},
            "hag.tif: no features of the 2 label files overlap the scene",
        ),
        (
            {"labels": [str(ALEXANDRIA / "buildings_mask.tif")] * 2},
            "--labels: got 2 label rasters for 1 images",
        ),
        (
            {"labels": [str(ALEXANDRIA / "buildings.geojson"), str(ALEXANDRIA / "hag.tif")]},
            "give vector files .* or one label raster per image, not both",
        ),
        ({"label_field": "crop"}, "no field 'crop'"),
        ({"unmapped": "maybe"}, "--unmapped 'maybe': choose one of ignore, background"),
    ],
)
def test_bad_inputs_raise_one_clear_line(tmp_path: Path, change: dict, message: str) -> None:
    args = {
        "images": [str(ALEXANDRIA / "hag.tif")],
        "labels": [str(ALEXANDRIA / "buildings.geojson")],
        "class_map": _class_map_file(tmp_path),
        "out": tmp_path / "out.zarr",
        "tile_size": 128,
        "overlap": 16,
    } | change
    with pytest.raises(InputError, match=message) as err:
        tile(**args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.zarr").exists()


def test_mixing_scenes_with_and_without_crs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no CRS while other scenes have one"):
        tile(
            [str(PIVOTS / "nebraska_landsat_albers_30m.tif"), AGNET_IMAGES[0]],
            [str(PIVOTS / "pivots_mask.tif"), AGNET_LABELS[0]],
            PIVOT_CLASSES, tmp_path / "mixed.zarr", tile_size=128, overlap=0,
        )  # fmt: skip


def test_gdal_virtual_paths_and_shapefiles(tmp_path: Path) -> None:
    """A scene read through a GDAL virtual path (/vsizip/) with Shapefile labels."""
    image, labels, mask, classes, _ = CASES["alexandria"]
    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as archive:
        archive.write(image, "hag.tif")
    gpd.read_file(labels).to_file(tmp_path / "buildings.shp")
    store = tile(
        [f"/vsizip/{tmp_path / 'scene.zip'}/hag.tif"], [str(tmp_path / "buildings.shp")], classes,
        tmp_path / "vsi.zarr", tile_size=128, overlap=16,
    )  # fmt: skip
    inputs = zarr.open_group(str(store), mode="r").attrs["inputs"]
    assert inputs[0]["of"] == "metadata" and inputs[1]["of"] == "bytes"
    labels_ = scene_labels(store)
    assert np.array_equal(labels_ == 1, read_band(mask) == 1)


def test_filegdb_labels_and_their_edits_key_the_store(tmp_path: Path) -> None:
    """A FileGDB, a folder, as labels (as many GIS teams keep parcels): tiled like the GeoJSON
    it was made from; the store's fingerprint covers the folder's files (an ArcGIS lock file
    left out), so an edit tiles again. Its checksum failed on the folder before."""
    image, labels, mask, classes, _ = CASES["alexandria"]
    gdb, frame = tmp_path / "buildings.gdb", gpd.read_file(labels)
    frame.to_file(gdb, driver="OpenFileGDB", layer="buildings")
    out = tmp_path / "g.zarr"
    store = tile([image], [gdb], classes, out, tile_size=128, overlap=16)
    assert np.array_equal(scene_labels(store) == 1, read_band(mask) == 1)
    first = zarr.open_group(str(store), mode="r").attrs["fingerprint"]
    (gdb / "buildings.sr.lock").write_text("")
    again = tile([image], [gdb], classes, out, tile_size=128, overlap=16)
    assert zarr.open_group(str(again), mode="r").attrs["fingerprint"] == first
    shutil.rmtree(gdb)
    frame.iloc[1:].to_file(gdb, driver="OpenFileGDB", layer="buildings")
    edited = tile([image], [gdb], classes, out, tile_size=128, overlap=16, overwrite=True)
    assert zarr.open_group(str(edited), mode="r").attrs["fingerprint"] != first


def test_label_values_in_no_class_are_warned_about_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SpaceNet's buildings, every other one marked "no" where the class map lists "yes" only:
    those become ignore (255), the others the class, and the values are named; a class map
    that lists none of the file's values is refused before any work, the values named."""
    image, labels, _, _, _ = CASES["atlanta"]
    frame = gpd.read_file(labels)
    frame["building"] = np.where(np.arange(len(frame)) % 2 == 0, "yes", "no")
    halves = tmp_path / "halves.gpkg"
    frame.to_file(halves)
    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  - name: background\n  - name: house\n    values: [yes]\n")
    with caplog.at_level(logging.WARNING, logger="geo"):
        store = tile(
            [str(image)], [str(halves)], str(path), tmp_path / "u.zarr", tile_size=256,
            overlap=0, label_field="building",
        )  # fmt: skip
    assert "building value(s) no are in no class: they become ignore" in caplog.text
    labels_, buildings = scene_labels(store), read_band(CASES["atlanta"][2]) == 1
    assert np.any(labels_[buildings] == 1) and np.any(labels_[buildings] == 255)
    assert set(np.unique(labels_[buildings])) <= {1, 255}
    path.write_text("classes:\n  - name: background\n  - name: house\n    values: [house]\n")
    with pytest.raises(InputError) as refused:
        tile([str(image)], [str(halves)], str(path), tmp_path / "v.zarr", tile_size=256,
             overlap=0, label_field="building")  # fmt: skip
    assert str(refused.value) == (
        f"{halves}: no building value is in a class of the class map (values no, yes; the class "
        "map lists house): list these values in its classes' `values`, or choose another label "
        "field"
    )
    assert not (tmp_path / "v.zarr").exists()


def test_label_values_that_differ_from_a_class_by_case_are_pointed_out(tmp_path: Path) -> None:
    """SpaceNet's `building` attribute holds "yes"; a class map that lists "Yes" matches nothing,
    and the refusal says why (values match exactly)."""
    image, labels, _, _, _ = CASES["atlanta"]
    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  - name: background\n  - name: building\n    values: [Yes]\n")
    with pytest.raises(InputError) as refused:
        tile(
            [str(image)], [str(labels)], str(path), tmp_path / "c.zarr", tile_size=256,
            overlap=0, label_field="building",
        )  # fmt: skip
    assert "(values match exactly, case too: yes is not Yes)" in str(refused.value)


def test_a_tile_store_or_a_model_gives_its_class_map_to_another(
    tmp_path: Path, pivots_run: Path
) -> None:
    """Labels of a new area, in a file of another name (its own class would be `fields_2024`),
    tiled with `--class-map TRAINING.zarr` get the training store's classes, label values and
    colours, so a model trained on that store evaluates them; `vectorize --class-map STORE`
    names its classes too. `--class-map RUN` does the same with the model's own class map (the
    store it was trained on, kept in adapter.json); a model saved without it is refused."""
    image, labels = PIVOTS / "nebraska_landsat_albers_30m.tif", PIVOTS / "pivots.gpkg"
    training = tile([image], [labels], PIVOT_CLASSES, tmp_path / "training.zarr", tile_size=128)
    renamed = tmp_path / "fields_2024.gpkg"
    gpd.read_file(labels).to_file(renamed)
    new = tile([image], [renamed], training, tmp_path / "new.zarr", tile_size=128)
    attrs = [zarr.open_group(str(s), mode="r").attrs for s in (training, new)]
    assert attrs[1]["class_map"] == attrs[0]["class_map"]
    assert attrs[1]["class_pixels"] == attrs[0]["class_pixels"]
    class_map_input = next(r for r in attrs[1]["inputs"] if r["role"] == "class_map")
    assert class_map_input["path"] == str(training / "zarr.json")

    out = tmp_path / "mask.gpkg"
    code, err = run_cli("vectorize", PIVOTS / "pivots_mask.tif", "--class-map", training,
                        "--out", out)  # fmt: skip
    assert code == 0, err[-3000:]
    assert set(gpd.read_file(out, layer="polygons").class_name) == {"pivot"}

    from_run = tmp_path / "from-run.zarr"
    code, err = run_cli("tile", image, "--labels", renamed, "--class-map", pivots_run,
                        "--tile-size", 128, "--out", from_run)  # fmt: skip
    assert code == 0, err[-3000:]
    run_attrs = zarr.open_group(str(from_run), mode="r").attrs
    assert run_attrs["class_map"] == attrs[0]["class_map"]
    assert run_attrs["class_pixels"] == attrs[0]["class_pixels"]
    run_input = next(r for r in run_attrs["inputs"] if r["role"] == "class_map")
    assert run_input["path"] == str(pivots_run / "adapter.json")
    code, err = run_cli("evaluate", from_run, "--model", pivots_run, "--device", "cpu")
    assert code == 0, err[-3000:]  # refused before: classes ['background', 'fields_2024'] differ

    old = tmp_path / "old-run"
    shutil.copytree(pivots_run, old)
    document = json.loads((old / "adapter.json").read_text())
    del document["class_map"]
    (old / "adapter.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match="saved without the label values of its classes; give"):
        tile([image], [renamed], old, tmp_path / "refused.zarr", tile_size=128)
    code, err = run_cli("vectorize", PIVOTS / "pivots_mask.tif", "--class-map", old,
                        "--out", tmp_path / "old.gpkg")  # fmt: skip
    assert code == 0, err[-3000:]  # names alone are enough to vectorise


def test_label_raster_codes_are_class_ids_when_no_class_lists_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pivots class map lists no values: the 0/1 mask's codes are the class ids (before,
    every code was in no class and the store held no labelled pixel)."""
    image, _, mask, classes, _ = CASES["pivots"]
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile([str(image)], [str(mask)], classes, tmp_path / "m.zarr", tile_size=128,
                     overlap=16)  # fmt: skip
    assert "lists no label values: raster code N is class N (0 background, 1 pivot)" in caplog.text
    assert np.array_equal(scene_labels(store), read_band(mask))


def test_a_store_without_labelled_pixels_is_said_plainly(tmp_path: Path) -> None:
    """Label codes no class lists: `tile` prints what is wrong (it divided by zero before)."""
    image, _, mask, _, _ = CASES["pivots"]
    classes = tmp_path / "classes.yaml"
    classes.write_text(
        "classes:\n  - {name: background, values: [7]}\n  - {name: pivot, values: [9]}\n"
    )
    store = tile([str(image)], [str(mask)], str(classes), tmp_path / "n.zarr", tile_size=128,
                 overlap=16)  # fmt: skip
    lines = store_lines(str(store))
    assert lines[0] == "  25 tiles of 128 px, overlap 16: 25 train (0 labelled)"
    assert lines[1] == NO_LABELS


def test_scenes_in_different_crs_share_one_label_file(tmp_path: Path) -> None:
    """Atlanta (UTM 16N) and Alexandria (UTM 18N) from one GeoPackage in EPSG:4326."""
    atlanta = gpd.read_file(CASES["atlanta"][1])[["geometry"]].to_crs(4326)
    alexandria = gpd.read_file(CASES["alexandria"][1])[["geometry"]]
    both = gpd.GeoDataFrame(gpd.pd.concat([atlanta, alexandria]), crs=4326)
    both.to_file(tmp_path / "buildings.gpkg")
    store = tile(
        [str(CASES["atlanta"][0]), str(CASES["alexandria"][0])], [str(tmp_path / "buildings.gpkg")],
        BUILDINGS, tmp_path / "two.zarr", tile_size=128, overlap=16,
    )  # fmt: skip
    for scene, name in enumerate(("atlanta", "alexandria")):
        ours, ref = scene_labels(store, scene) == 1, read_band(CASES[name][2]) == 1
        assert (ours & ref).sum() / (ours | ref).sum() >= 0.99, name
    index = gpd.read_file(store / "tile_index.gpkg", layer="tiles")
    assert index.crs.to_epsg() == 4326 and set(index["crs"]) == {"EPSG:32616", "EPSG:26918"}
    assert index.tile.tolist() == list(range(len(index)))
    first = index[index.scene == 0].iloc[0]
    assert first.minx == 733601.0  # bounds columns stay in the scene's own CRS


def test_one_vector_file_needs_no_class_map(
    stores: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`tile` without --class-map: every polygon is one class named after the file, labels the
    same as with the bundled two-class map, and the log says so."""
    image, labels, _, _, _ = CASES["pivots"]
    out = tmp_path / "p.zarr"
    argv = ["tile", image, "--labels", labels, "--out", out, *SMALL_TILES]
    with caplog.at_level(logging.INFO, logger="geo"):
        code, err = run_cli(*argv)
    assert code == 0, err[-3000:]
    assert f"no --class-map: classes 0 background, 1 pivots (every polygon of {labels})" in (
        caplog.text
    )
    classes = zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]
    assert [c["name"] for c in classes] == ["background", "pivots"]
    assert np.array_equal(scene_labels(out), scene_labels(stores["pivots"]))


def test_invalid_label_polygons_are_repaired_with_a_warning(
    stores: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pivot drawn as a bow-tie (its ring crossing itself, as a slip of the mouse in QGIS
    draws it) is labelled as QGIS's Fix geometries repairs it, both loops, and a warning says
    which file and where."""
    image, labels, _, classes, _ = CASES["pivots"]
    frame = gpd.read_file(labels)
    west, south, east, north = frame.geometry.iloc[0].bounds
    bowtie = shapely.Polygon([(west, south), (east, north), (east, south), (west, north)])
    assert not bowtie.is_valid
    drawn = frame.set_geometry([bowtie, *frame.geometry.iloc[1:]], crs=frame.crs)
    drawn.to_file(tmp_path / "drawn.gpkg")
    with caplog.at_level(logging.WARNING, logger="geo"):
        store = tile([str(image)], [str(tmp_path / "drawn.gpkg")], classes,
                     tmp_path / "d.zarr", tile_size=128, overlap=16)  # fmt: skip
    [warning] = [r.getMessage() for r in caplog.records if "invalid" in r.getMessage()]
    assert warning.startswith(
        f"{tmp_path / 'drawn.gpkg'}: 1 polygon(s) over {image} are invalid (the first: "
        "Self-intersection["
    ), warning
    labelled, reference = scene_labels(store) == 1, scene_labels(stores["pivots"]) == 1
    assert labelled.sum() < reference.sum()  # the loops are half the pivot's disc or less
    assert (labelled & ~reference).sum() < 0.1 * labelled.sum()  # within the pivot's box


def test_a_label_raster_needs_no_class_map(
    stores: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`tile` of label rasters without --class-map: a mask of one code on 0 (0/1, 0/255) is one
    class named after the file, with the colour of its colour table, the same labels as with a
    class map; rasters of several codes are one class per code, in numeric order, each pixel
    labelled with its own code's class."""
    image, _, mask, _, _ = CASES["pivots"]
    fields = pivot_mask_as(tmp_path / "fields.tif", lambda m: np.where(m == 1, 255, 0))
    with rasterio.open(fields, "r+") as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 255), 255: (35, 139, 69, 255)})
    out = tmp_path / "fields.zarr"
    argv = ["tile", image, "--labels", fields, "--out", out, *SMALL_TILES]
    with caplog.at_level(logging.INFO, logger="geo"):
        code, err = run_cli(*argv)
    assert code == 0, err[-3000:]
    assert "no --class-map: classes 0 background, 1 fields (code 255)" in caplog.text
    classes = zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]
    assert [(c["name"], c["values"]) for c in classes] == [
        ("background", ["0"]), ("fields", ["255"])
    ]  # fmt: skip
    assert classes[1]["color"] == "#238b45"
    mapped = tile([image], [mask], PIVOT_CLASSES, tmp_path / "mask.zarr", tile_size=128,
                  overlap=16)  # fmt: skip
    assert np.array_equal(scene_labels(out), scene_labels(mapped))

    out = tmp_path / "codes.zarr"
    code, err = run_cli("tile", *AGNET_IMAGES[:6], "--labels", *AGNET_LABELS[:6], "--out", out,
                        "--tile-size", "128", "--overlap", "0")  # fmt: skip
    assert code == 0, err[-3000:]
    codes = set().union(*(np.unique(read_band(Path(p))).tolist() for p in AGNET_LABELS[:6]))
    names = [c["name"] for c in zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]]
    assert names == ["background", *(str(c) for c in sorted(codes - {0}))] and len(names) > 5
    for scene, path in enumerate(AGNET_LABELS[:6]):
        assert np.array_equal(
            np.array(names)[scene_labels(out, scene)], read_band(Path(path)).astype(str)
        )

    def with_ignore(mask: np.ndarray) -> np.ndarray:
        mask[:, :40] = 2  # a second class along the western edge
        mask[200:260, :] = 255  # no label: the ignore code of segmentation masks
        return mask

    out = tmp_path / "ignore.zarr"
    labels = pivot_mask_as(tmp_path / "ignore.tif", with_ignore)
    code, err = run_cli("tile", image, "--labels", labels, "--out", out, *SMALL_TILES)
    assert code == 0, err[-3000:]
    names = [c["name"] for c in zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]]
    assert names == ["background", "1", "2"]
    expected = with_ignore(read_band(mask))
    assert np.array_equal(scene_labels(out), np.where(expected == 255, IGNORE, expected))


def test_classes_go_to_both_splits_or_are_named_as_unmeasured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A label raster of the whole scene, pivots labelled in its eastern third only: the
    validation tiles hold pivots (a class-blind split chose two tiles of background only there);
    a class labelled in one place only is named in a warning, its IoU cannot be measured."""
    image = CASES["pivots"][0]
    fields = pivot_mask_as(tmp_path / "fields.tif", lambda m: np.where(m == 1, 255, 0))
    store = tile([image], [fields], None, tmp_path / "fields.zarr")
    group = zarr.open_group(str(store), mode="r")
    val = group["split"][:] == 1
    assert val.any() and (group["labels"][:][val] == 1).any()

    def with_a_well(mask: np.ndarray) -> np.ndarray:
        mask[20:30, 440:450] = 2  # a few pixels of a third class, in one tile
        return mask

    wells = pivot_mask_as(tmp_path / "wells.tif", with_a_well)
    with caplog.at_level(logging.WARNING, logger="geo"):
        tile([image], [wells], None, tmp_path / "wells.zarr", tile_size=128, overlap=16)
    assert "class(es) 2: no pixel in the validation split" in caplog.text


def test_several_vector_files_are_one_set_of_polygons(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """Label files shipped one per scene or area (SpaceNet's GeoJSON per image): their polygons
    together, each file in its own CRS, the same labels as one file; one class named after
    files of one name, a class map needed for files of different names."""
    image, labels, _, _, _ = CASES["pivots"]
    fields = gpd.read_file(labels)
    (tmp_path / "east").mkdir(), (tmp_path / "west").mkdir()
    half = fields.geometry.centroid.x > fields.geometry.centroid.x.median()
    fields[half].to_file(tmp_path / "east" / "pivots.gpkg")
    fields[~half].to_crs(4326).to_file(tmp_path / "west" / "pivots.geojson")
    parts = [tmp_path / "east" / "pivots.gpkg", tmp_path / "west" / "pivots.geojson"]
    out = tmp_path / "parts.zarr"
    code, err = run_cli("tile", image, "--labels", *parts, "--out", out, *SMALL_TILES)
    assert code == 0, err[-3000:]
    names = [c["name"] for c in zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]]
    assert names == ["background", "pivots"]
    ours, ref = scene_labels(out), scene_labels(stores["pivots"])
    assert ((ours == 1) == (ref == 1)).mean() > 0.999 and np.array_equal(ours == 255, ref == 255)

    renamed = tmp_path / "west" / "more_pivots.geojson"
    parts[1].rename(renamed)
    code, err = run_cli("tile", image, "--labels", parts[0], renamed, "--out", tmp_path / "x.zarr")
    assert code == 2 and "--class-map: needed with 2 vector files of different names" in err
    code, err = run_cli("tile", image, "--labels", parts[0], renamed, "--class-map",
                        PIVOT_CLASSES, "--out", tmp_path / "y.zarr", "--tile-size", "128",
                        "--overlap", "16")  # fmt: skip
    assert code == 0, err[-3000:]
    assert np.array_equal(scene_labels(tmp_path / "y.zarr"), ours)


def test_geoparquet_labels_with_any_geometry_column_name(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """GeoParquet names its primary geometry column in its metadata ("geom" from DuckDB and
    others): labels, an AOI and the class values are read through it."""
    image, labels, _, classes, _ = CASES["pivots"]
    frame = gpd.read_file(labels).rename_geometry("geom")
    frame.to_parquet(tmp_path / "pivots.parquet")
    aoi = gpd.GeoDataFrame(geometry=[shapely.box(*frame.total_bounds)], crs=frame.crs)
    aoi.rename_geometry("shape").to_parquet(tmp_path / "aoi.parquet")
    store = tile([image], [tmp_path / "pivots.parquet"], classes, tmp_path / "p.zarr",
                 tile_size=128, overlap=16, aoi=str(tmp_path / "aoi.parquet"))  # fmt: skip
    assert np.array_equal(scene_labels(store), scene_labels(stores["pivots"]))


def test_polygons_this_tool_wrote_are_labels_again(stores: dict[str, Path], tmp_path: Path) -> None:
    """Polygons from `vectorize` (or `predict`), corrected in QGIS, train the next model: their
    GeoPackage also holds the `layer_styles` table, which is no layer of labels."""
    image, _, mask, classes, _ = CASES["pivots"]
    polygons = tmp_path / "pivots_polygons.gpkg"
    code, err = run_cli("vectorize", mask, "--class-map", classes, "--out", polygons)
    assert code == 0, err[-3000:]
    assert "layer_styles" in [name for name, _ in pyogrio.list_layers(polygons)]
    out = tmp_path / "again.zarr"
    code, err = run_cli("tile", image, "--labels", polygons, "--label-field", "class_name",
                        "--out", out, "--tile-size", "128", "--overlap", "16")  # fmt: skip
    assert code == 0, err[-3000:]
    names = [c["name"] for c in zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]]
    assert names == ["background", "pivot"]
    ours, ref = scene_labels(out) == 1, scene_labels(stores["pivots"]) == 1
    assert (ours & ref).sum() / (ours | ref).sum() >= 0.98


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_a_label_field_without_a_class_map_makes_one_class_per_value(
    stores: dict[str, Path], tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`--label-field crop` without --class-map: one class per distinct value (numbers in
    numeric order, text in text order, after background; a value "background", or 0 among
    numbers, is class 0, as code 0 is in label rasters), the same labels as a class map that
    lists those classes."""
    image, labels, _, _, _ = CASES["pivots"]
    fields = gpd.read_file(labels)
    fields["crop"] = np.where(fields["id"] % 2 == 0, "soy", "corn")
    fields["zone"] = np.where(fields["id"] % 3 == 0, 10, 9)
    fields["kind"] = np.where(fields["id"] % 3 == 0, "background", "pivot")
    fields["code"] = fields["id"] % 3  # 0, 1, 2: 0 the land between the pivots
    fields["typed"] = np.where(fields["id"] % 2 == 0, "pivot", "Pivot ")  # typed two ways
    path = tmp_path / f"fields{suffix}"
    fields.to_parquet(path) if suffix == ".parquet" else fields.to_file(path)
    cases = {
        "crop": [{"name": "background"}, {"name": "corn", "values": ["corn"]},
                 {"name": "soy", "values": ["soy"]}],
        "zone": [{"name": "background"}, {"name": "9", "values": [9]},
                 {"name": "10", "values": [10]}],
        "kind": [{"name": "background", "values": ["background"]},
                 {"name": "pivot", "values": ["pivot"]}],
        "code": [{"name": "background", "values": [0]}, {"name": "1", "values": [1]},
                 {"name": "2", "values": [2]}],
        "typed": [{"name": "background"}, {"name": "Pivot", "values": ["Pivot"]},
                  {"name": "pivot", "values": ["pivot"]}],
    }  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geo"):  # before a flow run resets logging
        tile([image], [path], None, tmp_path / "typed.zarr", tile_size=128, overlap=16,
             label_field="typed")  # fmt: skip
    assert "typed values that differ only in case are separate classes ('Pivot', 'pivot')" in (
        caplog.text
    )
    for field, listed in cases.items():
        out = tmp_path / f"{field}{suffix}.zarr"
        argv = ["tile", image, "--labels", path, "--label-field", field, "--out", out,
                "--tile-size", "128", "--overlap", "16"]  # fmt: skip
        code, err = run_cli(*argv)
        assert code == 0, err[-3000:]
        classes = zarr.open_group(str(out), mode="r").attrs["class_map"]["classes"]
        assert [c["name"] for c in classes] == [c["name"] for c in listed]
        mapped = tile([image], [path], listed, tmp_path / f"{field}{suffix}.listed.zarr",
                      tile_size=128, overlap=16, label_field=field)  # fmt: skip
        assert np.array_equal(scene_labels(out), scene_labels(mapped))
        assert set(np.unique(scene_labels(out))) == {*range(len(listed)), 255}


def test_glob_patterns_stand_for_the_files_they_match(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """Prefect parameters and YAML reach `tile` without a shell: `images/*.tif` and
    `labels/*.tif` give the store of the files listed one by one (the same scenes, label rasters
    paired in name order); a pattern that matches nothing is one line."""
    out = tmp_path / "agnet.zarr"
    code, err = run_cli(
        "tile", AGNET / "images" / "*.tif", "--labels", AGNET / "labels" / "lc8_*.tif",
        "--class-map", AGNET_CLASSES, "--out", tmp_path / "none.zarr",
    )  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"convlora-geo tile: error: --labels {AGNET / 'labels' / 'lc8_*.tif'}: no file matches "
        "this pattern"
    )
    code, err = run_cli("tile", AGNET / "*.tiff", "--labels", AGNET / "labels" / "cdl_*.tif",
                        "--out", tmp_path / "none.zarr")  # fmt: skip
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"convlora-geo tile: error: {AGNET / '*.tiff'}: no file matches this pattern"
    )  # a positional argument is named by its value alone
    assert not (tmp_path / "none.zarr").exists()
    code, err = run_cli(
        "tile", AGNET / "images" / "*.tif", "--labels", AGNET / "labels" / "cdl_*.tif",
        "--class-map", AGNET_CLASSES, "--out", out, "--tile-size", "128", "--overlap", "0",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    ours = zarr.open_group(str(out), mode="r")
    ref = zarr.open_group(str(stores["agnet"]), mode="r")
    assert [s["path"] for s in ours.attrs["scenes"]] == AGNET_IMAGES
    assert np.array_equal(ours["labels"][:], ref["labels"][:])
    assert np.array_equal(ours["images"][:], ref["images"][:])
