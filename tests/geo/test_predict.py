"""predict_scene on real scenes: grids, COG layout, nodata, polygons, styles and manifest."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from PIL import Image, ImageDraw, ImageFont
from rasterio import features
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import Resampling, calculate_default_transform, reproject
from scipy import ndimage

from convlora.files import sha256_file
from geo.contracts.classes import parse_class_list
from geo.errors import InputError
from geo.io.fonts import font_for
from geo.io.raster import decimated_shape, scene_info
from geo.predict.quicklook import MIN_SIDE, write_quicklook
from geo.predict.summary import polygon_summary
from geo.vectorize.polygons import MIN_AREA_PIXELS, polygonize
from tests.support.cli import run_cli, write_like
from tests.support.cog import validate_cog
from tests.support.models import CLASSES, ToyModel, metadata_for
from tests.support.paths import AGNET_IMAGE, FTW, NEBRASKA, RGB_BYTE, ROOT
from tests.support.predict import predict_image
from tests.support.quicklook import assert_last_line


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """RGB.byte (UTM, 300 m pixels, nodata collar) predicted with 128 px tiles."""
    out = tmp_path_factory.mktemp("rgb")
    metadata = metadata_for(RGB_BYTE, [1, 2, 3])
    return predict_image(RGB_BYTE, ToyModel(3), metadata, out, tile_size=128, overlap=32)


@pytest.fixture(scope="module")
def ftw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 8-band Sentinel-2 stack (10 m) with all bands, in 64 px tiles."""
    out = tmp_path_factory.mktemp("ftw")
    bands = list(range(1, 9))
    return predict_image(FTW, ToyModel(8), metadata_for(FTW, bands), out, tile_size=64, overlap=16)


def test_outputs_are_named_after_the_scene(rgb: dict[str, Path]) -> None:
    names = {k: p.name for k, p in rgb.items()}
    assert names == {
        "classes": "RGB.byte_classes.tif",
        "probability": "RGB.byte_probability.tif",
        "polygons": "RGB.byte_polygons.gpkg",
        "fiboa": "RGB.byte_polygons.parquet",
        "style": "RGB.byte_classes.qml",
        "quicklook": "RGB.byte_quicklook.png",
        "manifest": "RGB.byte_manifest.json",
    }
    assert sorted(p.name for p in rgb["classes"].parent.iterdir()) == sorted(names.values())


def test_fields_of_an_undated_scene_have_no_determination_datetime(rgb: dict[str, Path]) -> None:
    """RGB.byte records no date of its own: its fields' fiboa determination datetime is empty,
    not the Unix epoch (a dated scene's is its date: tests/geo/test_fields.py)."""
    with rasterio.open(RGB_BYTE) as src:
        assert "TIFFTAG_DATETIME" not in src.tags()
    fields = gpd.read_parquet(rgb["fiboa"])
    assert len(fields) > 0 and fields.determination_datetime.isna().all()


@pytest.mark.parametrize("name", ["classes", "probability"])
def test_rasters_are_cogs_on_the_input_grid(rgb: dict[str, Path], name: str) -> None:
    with rasterio.open(RGB_BYTE) as src, rasterio.open(rgb[name]) as out:
        assert (out.crs, out.transform, out.width, out.height) == (
            src.crs, src.transform, src.width, src.height)  # fmt: skip
        assert out.count == 1 and out.dtypes[0] == "uint8"
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert out.compression.name == "deflate"
        assert out.block_shapes == [(512, 512)]
        assert out.overviews(1) == [2]
        assert out.nodata == (255 if name == "classes" else 0)
        assert out.descriptions == (  # what QGIS shows instead of "Band 1"
            ("class id",) if name == "classes" else ("probability of the predicted class x 255",)
        )
    assert validate_cog(rgb[name]) == []


def test_class_raster_has_the_class_palette(rgb: dict[str, Path]) -> None:
    with rasterio.open(rgb["classes"]) as out:
        palette = out.colormap(1)
        assert out.colorinterp[0].name == "palette"
    for c in CLASSES:
        rgb_value = tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5))
        assert palette[c["id"]][:3] == rgb_value


def test_class_raster_names_its_classes_and_vectorizes_without_a_class_map(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """The class raster carries its classes in its metadata (`gdalinfo` shows them), so that
    `vectorize` of it, edited or not, needs no class map: the polygons predict wrote, again."""
    with rasterio.open(rgb["classes"]) as out:
        listed = json.loads(out.tags()["CLASSES"])
    assert [(c["id"], c["name"], c["color"]) for c in listed] == [
        (c["id"], c["name"], c["color"]) for c in CLASSES
    ]
    polygons = tmp_path / "again.gpkg"
    code, err = run_cli("vectorize", rgb["classes"], "--out", polygons, "--scores",
                        rgb["probability"])  # fmt: skip
    assert code == 0, err[-3000:]
    again = gpd.read_file(polygons, layer="polygons")
    written = gpd.read_file(rgb["polygons"], layer="polygons")
    assert len(written) > 100
    assert again.drop(columns=["source", "model"]).equals(written.drop(columns=["source", "model"]))


def test_nodata_follows_the_input_and_borders_are_predicted(rgb: dict[str, Path]) -> None:
    with rasterio.open(RGB_BYTE) as src:
        valid = src.read_masks(1) > 0
        for b in (2, 3):
            valid &= src.read_masks(b) > 0
    with rasterio.open(rgb["classes"]) as c, rasterio.open(rgb["probability"]) as p:
        classes, score = c.read(1), p.read(1)
    np.testing.assert_array_equal(classes == 255, ~valid)
    np.testing.assert_array_equal(score == 0, ~valid)
    assert set(np.unique(classes[valid])) <= {0, 1, 2}
    assert score[valid].min() >= 255 // 3  # the winner has at least 1/K


def test_scene_borders_are_covered(ftw: dict[str, Path]) -> None:
    with rasterio.open(ftw["classes"]) as c, rasterio.open(ftw["probability"]) as p:
        classes, score = c.read(1), p.read(1)
    for edge in (classes[0], classes[-1], classes[:, 0], classes[:, -1]):
        assert (edge != 255).all()
    assert (score > 0).all()


def region_iou(classes: np.ndarray, frame: gpd.GeoDataFrame, transform) -> dict:
    """Per class: IoU of the polygons rasterised back against regions of the default minimum
    area (MIN_AREA_PIXELS) or more."""
    ious = {}
    for c in (1, 2):
        labels, _ = ndimage.label(classes == c)
        big = np.bincount(labels.ravel()) >= MIN_AREA_PIXELS
        big[0] = False
        reference = big[labels]
        shapes = [(g, 1) for g in frame.geometry[frame.class_id == c]]
        drawn = features.rasterize(shapes, out_shape=classes.shape, transform=transform) > 0
        ious[c] = (drawn & reference).sum() / (drawn | reference).sum()
    return ious


@pytest.mark.parametrize("scene", ["rgb", "ftw"])
def test_polygons_rasterised_back_match_the_class_raster(
    scene: str, request: pytest.FixtureRequest
) -> None:
    paths = request.getfixturevalue(scene)
    frame = gpd.read_file(paths["polygons"], layer="polygons")
    with rasterio.open(paths["classes"]) as c:
        classes, transform = c.read(1), c.transform
    ious = region_iou(classes, frame, transform)
    print(f"{scene}: polygons vs class raster IoU {ious}")
    assert min(ious.values()) >= 0.98


def test_polygon_attributes(rgb: dict[str, Path]) -> None:
    frame = gpd.read_file(rgb["polygons"], layer="polygons")
    assert list(frame.columns) == [
        "id", "class_id", "class_name", "score", "area_m2", "perimeter_m", "source", "date",
        "model", "geometry"]  # fmt: skip
    assert frame.date.isna().all()  # the scene records no date
    assert len(frame) > 50 and set(frame.class_id) == {1, 2}
    names = {c["id"]: c["name"] for c in CLASSES}
    assert (frame.class_name == frame.class_id.map(names)).all()
    assert frame.score.between(1 / 3, 1).all()
    pixel_m2 = abs(rasterio.open(RGB_BYTE).transform.determinant)
    assert (frame.area_m2 >= MIN_AREA_PIXELS * pixel_m2).all() and (frame.perimeter_m > 0).all()
    np.testing.assert_allclose(frame.area_m2, frame.geometry.area, rtol=1e-6)
    assert (frame.source == "RGB.byte.tif").all() and (
        frame.model == "convlora-tiny-conv-lora"
    ).all()
    assert frame.crs == rasterio.open(RGB_BYTE).crs
    assert frame.is_valid.all() and (frame.geom_type == "Polygon").all()


def test_simplified_polygons_still_share_their_edges(ftw: dict[str, Path]) -> None:
    """At 15 m (1.5 px) neighbouring fields and water keep common edges: a valid coverage."""
    classes = parse_class_list(CLASSES, "test")
    frame = polygonize(ftw["classes"], ftw["probability"], classes, simplify=15.0)
    geoms = frame.geometry.values
    assert shapely.coverage_is_valid(geoms)
    union = shapely.union_all(geoms)
    np.testing.assert_allclose(union.area, frame.area_m2.sum(), rtol=1e-6)  # no overlaps
    n_vertices = shapely.get_num_coordinates(geoms).sum()
    with rasterio.open(ftw["classes"]) as c:
        shapes = [s for s, v in features.shapes(c.read(1), transform=c.transform) if v in (1, 2)]
    assert n_vertices < sum(len(s["coordinates"][0]) for s in shapes)  # simplification did work


def test_vectorize_of_a_predicted_raster_names_its_model(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """The class raster records the model that predicted it: `vectorize` of it, alone or with
    another raster as a mosaic, fills the polygons' `model` as `predict` did (it was empty)."""
    predicted = gpd.read_file(rgb["polygons"], layer="polygons")
    (model,) = set(predicted.model)
    assert model
    code, err = run_cli("vectorize", rgb["classes"], "--out", tmp_path / "again.gpkg")
    assert code == 0, err
    assert set(gpd.read_file(tmp_path / "again.gpkg", layer="polygons").model) == {model}
    with rasterio.open(rgb["classes"]) as src:  # beside it, east, recording no model
        east = src.transform @ Affine.translation(src.width, 0)
        tags = {k: v for k, v in src.tags().items() if k != "MODEL"}
    other = write_like(rgb["classes"], tmp_path / "other_classes.tif", transform=east)
    with rasterio.open(other, "r+") as dst:
        dst.update_tags(**tags)
    code, err = run_cli("vectorize", rgb["classes"], other, "--out", tmp_path / "both.gpkg")
    assert code == 0, err
    both = gpd.read_file(tmp_path / "both.gpkg", layer="polygons")
    assert set(zip(both.source, both.model.fillna("NULL"), strict=True)) <= {
        (rgb["classes"].name, model),
        ("other_classes.tif", "NULL"),  # no model known: NULL in QGIS, not an empty name
    }
    assert (both.model == model).any() and both.model.isna().any()


def test_the_quicklook_shows_the_classes_over_the_scene(rgb: dict[str, Path]) -> None:
    """Full size for a small scene with a legend below it: each pixel is the scene stretched
    between the 2 and 98 % values of each band's valid pixels, blended with its class colour;
    no data is black."""
    assert_quicklook(rgb["quicklook"], rgb["classes"], titled=True)
    assert_last_line(rgb["quicklook"], "RGB.byte")  # the scene's name; it records no date


def test_the_quicklook_shows_a_scene_unlike_the_training_data(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """A byte scene under a model of int16 reflectances (about 200 to 4500): stretched by the
    training statistics it would be black; by its own it shows."""
    metadata = metadata_for(NEBRASKA, [1, 2, 3])
    assert metadata.normalization.p2[0] > 255
    dest = write_quicklook(scene_info(str(RGB_BYTE)), rgb["classes"], metadata, tmp_path / "q.png")
    assert_quicklook(dest, rgb["classes"])


def test_the_quicklook_legend_draws_accented_and_cyrillic_names(
    rgb: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Class names in French and Russian are drawn in a font that has their letters (DejaVu
    Sans on this machine), not as boxes (Pillow's bundled font has no é, no Cyrillic), in a
    legend as wide as the longest name (a small picture: 200 px); a name no installed font
    draws is logged."""
    try:
        dejavu = ImageFont.truetype("DejaVuSans.ttf", 11)
    except OSError:
        pytest.skip("needs the DejaVu Sans font (Debian: fonts-dejavu-core)")
    names = ["blé d'hiver", "пшеница озимая, орошаемая пивотами по кругу (центр)"]
    classes = [CLASSES[0], *({**c, "name": n} for c, n in zip(CLASSES[1:], names, strict=True))]
    metadata = metadata_for(RGB_BYTE, [1, 2, 3], classes=classes)
    dest = write_quicklook(
        scene_info(str(RGB_BYTE)), rgb["classes"], metadata, tmp_path / "q.png", max_side=200
    )
    picture = Image.open(dest).convert("RGB")
    scene_height = picture.height - 3 * 18 - 8  # two classes and no data (RGB.byte's collar)
    assert 220 < 28 + dejavu.getlength(names[1]) < picture.width  # the long name is whole
    for row, name in enumerate(names):
        top = scene_height + 4 + row * 18
        expected = Image.new("RGB", (picture.width - 28, 18), (255, 255, 255))
        ImageDraw.Draw(expected).text((0, 1), name, fill=(0, 0, 0), font=dejavu)
        shown = picture.crop((28, top, picture.width, top + 18))
        assert shown.tobytes() == expected.tobytes(), name
        boxes = Image.new("RGB", expected.size, (255, 255, 255))
        ImageDraw.Draw(boxes).text((0, 1), name, fill=(0, 0, 0), font=ImageFont.load_default())
        assert shown.tobytes() != boxes.tobytes()  # how it looked before

    with caplog.at_level(logging.INFO, logger="geo.io.fonts"):
        font_for("\U0010fffc")  # private use: in no font
    assert "no installed font draws every character of '\\U0010fffc'" in caplog.text


def test_the_quicklook_legend_of_many_classes_fills_columns(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """30 classes the scene shows (a crop-type map) fill columns side by side under the picture,
    as wide as the picture allows, instead of a strip of 30 rows far taller than the scene."""
    classes = [{"id": i, "name": "background" if i == 0 else f"crop type {i}"} for i in range(31)]
    metadata = metadata_for(RGB_BYTE, [1, 2, 3], classes=classes)
    with rasterio.open(rgb["classes"]) as src:
        predicted = src.read(1)
    rows = np.indices(predicted.shape)[0]
    crops = np.where(predicted == 255, 255, rows * 31 // predicted.shape[0]).astype(np.uint8)
    crops_path = write_like(rgb["classes"], tmp_path / "crops.tif", crops[None])
    dest = write_quicklook(scene_info(str(RGB_BYTE)), crops_path, metadata, tmp_path / "q.png")
    picture = np.asarray(Image.open(dest).convert("RGB"))
    legend = picture[718:]
    assert picture.shape[1] == 791 and len(legend) == 8 * 18 + 8  # 4 columns of 8 rows
    for c in metadata.classes[1:]:
        assert (np.abs(legend.astype(int) - c.rgba[:3]).sum(axis=2) == 0).any(), c.name


def test_the_quicklook_legend_names_the_classes_not_predicted(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """Of 30 crop classes the scene shows two: those two get swatches, the others are named in
    one grey line under them (a legend of 30 swatches hid which colours the picture holds), and
    a class the model never predicts is said even where it is the only one."""
    classes = [{"id": i, "name": "background" if i == 0 else f"crop type {i}"} for i in range(31)]
    metadata = metadata_for(RGB_BYTE, [1, 2, 3], classes=classes)
    dest = write_quicklook(scene_info(str(RGB_BYTE)), rgb["classes"], metadata, tmp_path / "q.png")
    picture = np.asarray(Image.open(dest).convert("RGB"))
    legend = picture[718:]
    assert len(legend) == 4 * 18 + 8  # crop types 1 and 2, no data, the line of the others
    for c in metadata.classes[1:]:
        shown = (np.abs(legend.astype(int) - c.rgba[:3]).sum(axis=2) == 0).any()
        assert shown == (c.id in (1, 2)), c.name
    assert_last_line(dest, "not predicted: crop type 3, crop type 4, crop type 5 and 25 more")

    nothing = np.zeros((1, 718, 791), np.uint8)  # every pixel background
    background = write_like(rgb["classes"], tmp_path / "background.tif", nothing)
    pivots = metadata_for(RGB_BYTE, [1, 2, 3], classes=[CLASSES[0], {"id": 1, "name": "pivot"}])
    dest = write_quicklook(scene_info(str(RGB_BYTE)), background, pivots, tmp_path / "b.png")
    assert_last_line(dest, "not predicted: pivot")


def test_the_quicklook_of_a_small_scene_is_enlarged_to_be_seen(tmp_path: Path) -> None:
    """An AgNet tile of 128 x 128 px: its picture is 512 px wide, each pixel a 4 x 4 square (it
    was 128 px wide, under a legend wider than the scene)."""
    metadata = metadata_for(AGNET_IMAGE, [4, 3, 2])
    outputs = predict_image(AGNET_IMAGE, ToyModel(3), metadata, tmp_path)
    picture = np.asarray(Image.open(outputs["quicklook"]).convert("RGB"))
    scene = picture[:512]
    assert picture.shape[1] == 512 and len(picture) > 512
    assert np.array_equal(scene, np.repeat(np.repeat(scene[::4, ::4], 4, axis=0), 4, axis=1))


def assert_quicklook(path: Path, classes_path: Path, titled: bool = False) -> None:
    """The quick-look of RGB.byte with its classes, as the tests above describe it (`titled`:
    with a title row under the legend, as `predict` writes it)."""
    picture = np.asarray(Image.open(path).convert("RGB")).astype(float)
    with rasterio.open(classes_path) as src:
        classes = src.read(1)
    with rasterio.open(RGB_BYTE) as src:
        raw, valid = src.read().astype(float), src.dataset_mask() > 0
    low, high = np.percentile(raw[:, valid], [2, 98], axis=1)[:, :, None, None]
    stretched = np.moveaxis(np.clip((raw - low) / (high - low), 0, 1) * 255, 0, -1)
    assert picture.shape == (718 + (3 + titled) * 18 + 8, 791, 3)  # 2 classes, no data
    scene = picture[:718]
    assert (scene[classes == 255] == 0).all()
    no_data_swatch = picture[718 + 4 + 2 * 18 + 3 : 718 + 4 + 2 * 18 + 14, 7:20]
    assert (no_data_swatch == 0).all()  # the legend's black swatch for the collar
    for c in CLASSES[1:]:
        colour = np.array([int(c["color"][i : i + 2], 16) for i in (1, 3, 5)])
        where = classes == c["id"]
        expected = 0.45 * stretched[where] + 0.55 * colour
        assert where.sum() > 1000 and np.abs(scene[where] - expected).max() <= 1.0
        assert (np.abs(picture[718:] - colour).sum(axis=2) == 0).any()  # its legend swatch


def test_qgis_styles_are_stored(rgb: dict[str, Path]) -> None:
    with sqlite3.connect(rgb["polygons"]) as con:
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles"
        ).fetchall()
    assert len(rows) == 1
    table, geom_column, default, qml = rows[0]
    assert (table, geom_column, default) == ("polygons", "geom", 1)
    renderer = ET.fromstring(qml).find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    labels = {c.get("value"): c.get("label") for c in renderer.iter("category")}
    assert labels == {"1": "field", "2": "water"}
    palette = ET.parse(rgb["style"]).getroot().find("pipe/rasterrenderer/colorPalette")
    entries = {(e.get("value"), e.get("label"), e.get("color")) for e in palette}
    assert entries == {(str(c["id"]), c["name"], c["color"]) for c in CLASSES}


def test_manifest_records_inputs_model_parameters_and_timings(rgb: dict[str, Path]) -> None:
    manifest = json.loads(rgb["manifest"].read_text())
    assert manifest["inputs"]["image"]["sha256"] == sha256_file(RGB_BYTE)
    assert manifest["parameters"]["bands"] == [1, 2, 3]
    assert len(manifest["inputs"]["model"]["weights_sha256"]) == 64
    assert manifest["parameters"]["tile_size"] == 128 and manifest["parameters"]["overlap"] == 32
    trained = manifest["model"]  # the scale SAM saw in training, beside the windows' here
    assert (trained["image_size"], trained["tile_size"], trained["bands"]) == (128, 128, [1, 2, 3])
    assert {"sam_variant", "adapter", "overlap"} <= set(trained)
    pixel_m2 = abs(rasterio.open(RGB_BYTE).transform.determinant)  # the default: 4 pixels
    assert manifest["parameters"]["min_area"] == pytest.approx(MIN_AREA_PIXELS * pixel_m2)
    assert manifest["parameters"]["simplify"] == 2.0  # at most 1 pixel: 300 m here
    assert {"torch", "rasterio", "gdal", "shapely"} <= set(manifest["software"])
    assert {"predict", "cog", "vectorize", "total"} <= set(manifest["timings_s"])
    for name in ("classes", "probability", "polygons", "style"):
        assert manifest["outputs"][name]["sha256"] == sha256_file(rgb[name])
    assert manifest["resumed"] is False


def test_a_rerun_with_the_same_inputs_keeps_the_outputs(
    rgb: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    before = {name: p.stat().st_mtime_ns for name, p in rgb.items()}
    metadata = metadata_for(RGB_BYTE, [1, 2, 3])
    with caplog.at_level(logging.INFO, logger="geo.predict"):
        again = predict_image(
            RGB_BYTE, ToyModel(3), metadata, rgb["classes"].parent, tile_size=128, overlap=32
        )
    assert again == rgb
    assert {name: p.stat().st_mtime_ns for name, p in rgb.items()} == before
    assert f"RGB.byte: its outputs in {rgb['classes'].parent} are finished" in caplog.text


@pytest.fixture(scope="module")
def geographic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crop of RGB.byte warped to EPSG:4326 (about 0.003 degree pixels)."""
    path = tmp_path_factory.mktemp("geographic") / "rgb_4326.tif"
    with rasterio.open(RGB_BYTE) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", 300, 300, left=200000, bottom=2700000, right=290000,
            top=2790000)  # fmt: skip
        profile = {**src.profile, "crs": "EPSG:4326", "transform": transform, "width": width,
                   "height": height}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            for b in (1, 2, 3):
                reproject(
                    rasterio.band(src, b), rasterio.band(dst, b), resampling=Resampling.nearest
                )
    return path


def pixel_areas_m2(transform, rows: int) -> np.ndarray:
    """Spherical area of one pixel in each row: R² Δλ |sin φ_top - sin φ_bottom|."""
    lat = np.radians(transform.f + transform.e * np.arange(rows + 1))
    return 6_371_008.8**2 * np.radians(transform.a) * np.abs(np.diff(np.sin(lat)))


def test_geographic_scene_gets_areas_in_square_metres(geographic: Path, tmp_path: Path) -> None:
    metadata = metadata_for(geographic, [1, 2, 3], tile_size=64)
    paths = predict_image(
        geographic, ToyModel(3), metadata, tmp_path / "out", min_area=0.0, simplify=0.0
    )
    frame = gpd.read_file(paths["polygons"], layer="polygons")
    with rasterio.open(paths["classes"]) as c:
        per_row = np.isin(c.read(1), (1, 2)).sum(axis=1)
        t = c.transform
    row_m2 = pixel_areas_m2(t, len(per_row))
    np.testing.assert_allclose(frame.area_m2.sum(), (per_row * row_m2).sum(), rtol=0.01)


def test_geographic_scene_without_polygons_measures_without_warning(
    geographic: Path, tmp_path: Path
) -> None:
    """No region reaches `min_area`: an empty polygon layer, and no geopandas warning about
    areas measured in degrees."""
    metadata = metadata_for(geographic, [1, 2, 3], tile_size=64)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*geographic CRS")
        paths = predict_image(
            geographic, ToyModel(3), metadata, tmp_path / "out", min_area=1e12, simplify=0.0
        )
    frame = gpd.read_file(paths["polygons"], layer="polygons")
    assert len(frame) == 0 and {"area_m2", "perimeter_m"} <= set(frame.columns)


def test_geographic_min_area_and_simplify_are_in_metres(geographic: Path, tmp_path: Path) -> None:
    """`min_area` (m²) keeps exactly the regions whose spherical area reaches it, and
    `simplify` (m) removes vertices without moving the outlines by more than about a pixel:
    both need degrees converted to metres (a conversion of 1 keeps nothing, or everything)."""
    metadata = metadata_for(geographic, [1, 2, 3], tile_size=64)
    min_area, tolerance = 1_000_000.0, 300.0  # about 11 pixels; one pixel is ~300 m wide
    raw = predict_image(
        geographic, ToyModel(3), metadata, tmp_path / "raw", min_area=0.0, simplify=0.0
    )
    paths = predict_image(
        geographic, ToyModel(3), metadata, tmp_path / "out", min_area=min_area,
        simplify=tolerance,
    )  # fmt: skip
    with rasterio.open(paths["classes"]) as c:
        classes, t = c.read(1), c.transform
    row_m2 = pixel_areas_m2(t, classes.shape[0])
    expected = 0
    for value in (1, 2):
        labels, count = ndimage.label(classes == value)
        areas = ndimage.sum(np.broadcast_to(row_m2[:, None], classes.shape), labels,
                            range(1, count + 1))  # fmt: skip
        expected += int((areas >= min_area).sum())
    frame = gpd.read_file(paths["polygons"], layer="polygons")
    everything = gpd.read_file(raw["polygons"], layer="polygons")
    assert 0 < len(frame) == expected < len(everything)
    assert frame.area_m2.min() >= min_area * 0.97  # areas after simplification
    kept = everything[everything.area_m2 >= min_area]
    vertices = shapely.get_num_coordinates(frame.geometry.values).sum()
    assert vertices < 0.8 * shapely.get_num_coordinates(kept.geometry.values).sum()
    moved = shapely.symmetric_difference(
        shapely.union_all(frame.geometry.values), shapely.union_all(kept.geometry.values)
    )
    assert moved.area < 0.05 * shapely.union_all(kept.geometry.values).area


def test_bad_inputs_raise_input_errors(tmp_path: Path) -> None:
    metadata = metadata_for(RGB_BYTE, [1, 2, 3])
    four = metadata_for(FTW, [1, 2, 3, 4])
    with pytest.raises(InputError, match="band 4 out of range"):
        predict_image(RGB_BYTE, ToyModel(4), four, tmp_path)
    with pytest.raises(InputError, match="--overlap 64"):
        predict_image(RGB_BYTE, ToyModel(3), metadata, tmp_path, tile_size=128, overlap=64)
    with pytest.raises(InputError, match="not found"):
        predict_image(tmp_path / "missing.tif", ToyModel(3), metadata, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_other_classes_fails_without_touching_outputs(tmp_path: Path) -> None:
    metadata = metadata_for(FTW, [1, 2, 3], tile_size=64)
    with pytest.raises(ValueError, match="the metadata lists 3 classes"):
        predict_image(FTW, ToyModel(3, num_classes=2), metadata, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".austria_s2_2021_winA_winB.partial"]


def test_new_parameters_replace_the_outputs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metadata = metadata_for(FTW, [1, 2, 3], tile_size=64)
    first = predict_image(FTW, ToyModel(3), metadata, tmp_path)
    classes_bytes = first["classes"].read_bytes()
    before = len(gpd.read_file(first["polygons"], layer="polygons"))
    with caplog.at_level(logging.INFO, logger="geo.predict"):
        second = predict_image(FTW, ToyModel(3), metadata, tmp_path, min_area=20_000)
    assert f"replacing its outputs in {tmp_path} (--min-area 400, now 20000)" in caplog.text
    assert second == first
    after = gpd.read_file(second["polygons"], layer="polygons")
    assert 0 < len(after) < before and after.area_m2.min() >= 20_000
    assert json.loads(second["manifest"].read_text())["parameters"]["min_area"] == 20_000
    assert second["classes"].read_bytes() == classes_bytes  # same pixels, same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first.values())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geo.predict"):
        predict_image(FTW, ToyModel(3, seed=1), metadata, tmp_path, batch_size=2)
    assert "(another model; --batch-size 4, now 2; --min-area 20000, now 400)" in caplog.text


CRASH_WHILE_PUBLISHING = """
import os, signal, sys
from pathlib import Path
from tests.support.models import ToyModel, metadata_for
from tests.support.predict import predict_image
real = os.replace
def replace_then_crash(src, dst):  # the machine dies right after the first output is in place
    real(src, dst)
    if str(dst).endswith("_classes.tif"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_crash
predict_image(sys.argv[1], ToyModel(3, seed=1), metadata_for(sys.argv[1], [1, 2, 3],
              tile_size=64), Path(sys.argv[2]))
"""


def test_a_crash_while_outputs_are_replaced_leaves_no_finished_mixture(tmp_path: Path) -> None:
    """Outputs of one model, then another model's run killed once its class raster is in place:
    the same outputs asked for again are predicted again (the old manifest, marking them
    finished, went first), not taken for finished with the other model's class raster."""
    metadata = metadata_for(FTW, [1, 2, 3], tile_size=64)
    first = predict_image(FTW, ToyModel(3), metadata, tmp_path)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_WHILE_PUBLISHING, str(FTW), str(tmp_path)], cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert not first["manifest"].exists()
    again = predict_image(FTW, ToyModel(3), metadata, tmp_path)
    manifest = json.loads(again["manifest"].read_text())
    for output in manifest["outputs"].values():
        assert sha256_file(tmp_path / output["file"]) == output["sha256"], output["file"]


def test_a_scene_without_crs_gets_pixel_units_without_library_warnings(tmp_path: Path) -> None:
    """RGB.byte without georeferencing (no CRS, identity transform): outputs on its pixel grid
    where QGIS shows it (x = col, y = -row), polygons over them, polygon areas and the manifest's
    totals in pixels, and neither rasterio nor pyogrio warns."""
    scene = write_like(RGB_BYTE, tmp_path / "nocrs.tif", crs=None, transform=Affine.identity())
    metadata = metadata_for(scene, [1, 2, 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = predict_image(
            scene, ToyModel(3), metadata, tmp_path / "out", min_area=20, simplify=0.0
        )
    assert [str(w.message) for w in caught if "crs" in str(w.message).lower()
            or issubclass(w.category, NotGeoreferencedWarning)] == []  # fmt: skip
    with rasterio.open(outputs["classes"]) as src:  # where QGIS shows the scene: y = -row
        assert src.crs is None and src.transform == Affine(1, 0, 0, 0, -1, 0)
        classes, transform = src.read(1), src.transform
    polygons = gpd.read_file(outputs["polygons"], layer="polygons")
    assert len(polygons) > 0 and polygons.area_px.min() >= 20 and "area_m2" not in polygons
    inside = polygons.geometry.representative_point()  # each polygon over pixels of its class
    rows, cols = rasterio.transform.rowcol(transform, inside.x, inside.y)
    found = classes[np.asarray(rows), np.asarray(cols)]
    assert (found == polygons.class_id.to_numpy()).all()
    manifest = json.loads(outputs["manifest"].read_text())
    areas = manifest["polygon_area_px_per_class"]
    assert "polygon_area_ha_per_class" not in manifest
    rows = polygon_summary(str(outputs["manifest"]))
    assert rows and all(set(r) == {"class_name", "polygons", "area_px"} for r in rows)
    for name, area in areas.items():
        assert area == pytest.approx(polygons[polygons.class_name == name].area_px.sum(), abs=0.1)


def test_the_manifest_gives_the_share_of_the_scene_predicted(
    rgb: dict[str, Path], tmp_path: Path
) -> None:
    """`predicted_percent`: the class raster's pixels with a class, counted exactly: for
    RGB.byte (a nodata collar) and for a copy whose every other 2 x 2 block is no data too
    (scattered, as a cloud mask at 20 m over 10 m pixels is)."""
    with rasterio.open(rgb["classes"]) as src:
        ids = src.read(1)
    manifest = json.loads(rgb["manifest"].read_text())
    assert manifest["predicted_percent"] == round(100 * float(np.mean(ids != 255)), 1) < 100
    with rasterio.open(RGB_BYTE) as src:
        meta, pixels = src.profile, src.read()
    rows, cols = np.indices(pixels.shape[1:])
    pixels[:, ((rows // 2 + cols // 2) % 2) == 1] = 0  # RGB.byte's nodata
    holes = tmp_path / "holes.tif"
    with rasterio.open(holes, "w", **meta) as dst:
        dst.write(pixels)
    out = predict_image(holes, ToyModel(3), metadata_for(RGB_BYTE, [1, 2, 3]), tmp_path / "out",
                        tile_size=128, overlap=32)  # fmt: skip
    with rasterio.open(out["classes"]) as src:
        share = 100 * float(np.mean(src.read(1) != 255))
    assert 20 < share < 50
    assert json.loads(out["manifest"].read_text())["predicted_percent"] == round(share, 1)


def test_the_quicklook_legend_names_no_data_only_where_there_is_some(
    ftw: dict[str, Path], rgb: dict[str, Path]
) -> None:
    """The black of pixels not predicted (RGB.byte's collar) gets a legend row, "not predicted
    (no data)"; the FTW stack, predicted everywhere, has none."""
    for paths, no_data in ((ftw, False), (rgb, True)):
        with rasterio.open(paths["classes"]) as src:
            assert bool((src.read(1) == 255).any()) == no_data
            height, width = decimated_shape(src.width, src.height, 1024)
        height *= max(1, MIN_SIDE // max(height, width))  # a small scene enlarged
        picture = Image.open(paths["quicklook"])
        assert picture.height == height + (2 + no_data + 1) * 18 + 8  # classes, no data, title
