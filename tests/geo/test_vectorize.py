"""Windowed polygonisation: regions cut by processing bands are whole again."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio import features
from safetensors.torch import save_file
from scipy import ndimage

from convlora.adapter_files import FORMAT, WEIGHTS_NAME
from geo.contracts.classes import CLASSES_TAG, ClassMap, parse_class_list
from geo.io.outputs import exclusive
from geo.vectorize.classes import warn_other_names
from geo.vectorize.polygons import polygonize, write_polygons
from geo.vectorize.regions import regions
from tests.support.cli import cli_process, run_cli, write_like
from tests.support.paths import DATA, PIVOT_CLASSES, ROOT
from tests.support.tiny_sam import tiny_config

# A real 3-class field-boundary model output (0 background/nodata, 1 field, 2 boundary).
BUILDINGS = ROOT / "examples" / "buildings_classes.yaml"
FTW_PREDICTION = DATA / "ftw_austria_sentinel2" / "ftw_model_prediction_3class.tif"
CLASSES = parse_class_list(
    [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "field", "color": "#33a02c"},
        {"id": 2, "name": "boundary", "color": "#e31a1c"},
    ],
    "test",
)


def whole_raster_polygons(path: Path) -> list[tuple[int, shapely.Geometry]]:
    """Reference: rasterio.features.shapes over the whole raster at once, in pixel coordinates."""
    with rasterio.open(path) as src:
        data = src.read(1)
    return sorted(
        ((int(v), shapely.geometry.shape(g)) for g, v in features.shapes(data, data > 0)),
        key=lambda item: (item[0], item[1].bounds[1], item[1].bounds[0], item[1].area),
    )


@pytest.mark.parametrize("band_rows", [7, 16, 64, 1000])
def test_regions_in_bands_equal_polygons_of_the_whole_raster(band_rows: int) -> None:
    expected = whole_raster_polygons(FTW_PREDICTION)
    got = sorted(
        ((r.class_id, r.geometry) for b in regions(FTW_PREDICTION, FTW_PREDICTION,
                                                    band_rows=band_rows) for r in b.regions),
        key=lambda item: (item[0], item[1].bounds[1], item[1].bounds[0], item[1].area),
    )  # fmt: skip
    assert len(got) == len(expected) > 100
    for (c1, g1), (c2, g2) in zip(got, expected, strict=True):
        assert c1 == c2 and g1.geom_type == "Polygon"
        assert shapely.equals(g1, g2)


def test_region_pixels_and_scores_add_up() -> None:
    with rasterio.open(FTW_PREDICTION) as src:
        data = src.read(1)
    found = [r for b in regions(FTW_PREDICTION, FTW_PREDICTION, band_rows=10) for r in b.regions]
    for c in (1, 2):
        mine = [r for r in found if r.class_id == c]
        assert sum(r.pixels for r in mine) == (data == c).sum()
        assert sum(r.score_sum for r in mine) == c * (data == c).sum()
        assert all(r.geometry.area == r.pixels for r in mine)


def test_polygonize_filters_by_area_in_square_metres() -> None:
    frame = polygonize(FTW_PREDICTION, FTW_PREDICTION, CLASSES, min_area=5000.0, simplify=0.0)
    everything = polygonize(FTW_PREDICTION, FTW_PREDICTION, CLASSES, min_area=0.0, simplify=0.0)
    assert len(everything) > len(frame) > 0
    assert frame.area_m2.min() >= 5000.0
    assert (everything.area_m2 % 100 == 0).all()  # whole 10 m pixels
    np.testing.assert_allclose(frame.perimeter_m, frame.geometry.length)
    assert frame.crs.to_epsg() == 32633


def test_default_minimum_area_keeps_the_buildings_of_fine_imagery(tmp_path: Path) -> None:
    """The default --min-area is 4 pixels, whatever their size: the SpaceNet Atlanta building
    mask (0.5 m pixels, houses of 55 to 300 m²) keeps every building (500 m², the default
    before, dropped them all), and specks of 3 pixels go."""
    mask = DATA / "spacenet_atlanta_buildings" / "atlanta_buildings_mask.tif"
    with rasterio.open(mask) as src:
        data, profile = src.read(1), src.profile
    labels, _ = ndimage.label(data == 1)
    buildings = (np.bincount(labels.ravel())[1:] >= 4).sum()  # the mask holds a 1-pixel speck
    clear = ndimage.binary_erosion(data == 0, np.ones((5, 3)), border_value=0)
    row, col = np.argwhere(clear)[0]
    data[row - 1 : row + 2, col] = 1  # a speck of 3 pixels, apart from every building
    speckled = tmp_path / "speckled.tif"
    with rasterio.open(speckled, "w", **profile) as dst:
        dst.write(data, 1)
    out = tmp_path / "buildings.gpkg"
    code, err = run_cli("vectorize", speckled, "--class-map", BUILDINGS, "--out", out)
    assert code == 0, err[-3000:]
    frame = gpd.read_file(out, layer="polygons")
    assert len(frame) == buildings and frame.area_m2.min() >= 4 * 0.25
    assert 0 < frame.area_m2.min() < 500


def test_the_model_that_predicted_a_raster_gives_its_classes(tmp_path: Path) -> None:
    """`vectorize --class-map RUN` (or its adapter.json): a prediction edited in QGIS is
    vectorised again with the classes of the model that predicted it."""
    run = tmp_path / "run"
    run.mkdir()
    classes = [c.to_dict() for c in CLASSES]
    save_file({}, str(run / WEIGHTS_NAME))  # the weights are not read
    document = {
        "format": FORMAT,
        "config": tiny_config(image_size=128, num_classes=3, in_channels=3).to_dict(),
        "classes": classes, "bands": [1, 2, 3], "tile_size": 128,
        "normalization": {"mean": [0.0] * 3, "std": [1.0] * 3},
    }  # fmt: skip
    (run / "adapter.json").write_text(json.dumps(document))
    (tmp_path / "classes.json").write_text(json.dumps(classes))
    frames = []
    for i, class_map in enumerate((run, run / "adapter.json", tmp_path / "classes.json")):
        out = tmp_path / f"fields{i}.gpkg"
        code, err = run_cli("vectorize", FTW_PREDICTION, "--class-map", class_map, "--out", out)
        assert code == 0, err[-3000:]
        frames.append(gpd.read_file(out, layer="polygons"))
    assert set(frames[0].class_name) == {"field", "boundary"}
    for frame in frames[1:]:
        assert frame.drop(columns="geometry").equals(frames[0].drop(columns="geometry"))


def test_a_class_map_naming_other_classes_than_the_raster_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A class raster predict wrote names its classes; a --class-map that names them otherwise
    (another model's, class 1 renamed) is said, the class first named otherwise, and the same
    names are quiet."""
    raster = tmp_path / "classes.tif"
    raster.write_bytes(FTW_PREDICTION.read_bytes())
    with rasterio.open(raster, "r+") as dst:
        dst.update_tags(**{CLASSES_TAG: json.dumps([c.to_dict() for c in CLASSES])})
    renamed = ClassMap(parse_class_list([{**c.to_dict(), "name": "parcel"} if c.id == 1 else
                                         c.to_dict() for c in CLASSES], "renamed"))  # fmt: skip
    with rasterio.open(raster) as src:
        listed = src.tags()[CLASSES_TAG]
    with caplog.at_level(logging.WARNING, logger="geo"):
        warn_other_names(str(raster), listed, ClassMap(CLASSES))
        assert caplog.text == ""
        warn_other_names(str(raster), listed, renamed)
    assert (
        f"{raster} names its classes otherwise than --class-map (class 1: 'field' where the map "
        "has 'parcel'): the polygons take the map's names" in caplog.text
    )


def test_without_a_class_map_each_id_is_a_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`vectorize` of a class raster that names no classes, without --class-map: 0 background,
    each other id a class named by its id (a mask of one id: named after the file), coloured by
    the raster's colour table; the regions those of a class map of the same ids."""
    out = tmp_path / "ids.gpkg"
    with caplog.at_level(logging.INFO, logger="geo"):
        code, err = run_cli("vectorize", FTW_PREDICTION, "--out", out)
    assert code == 0, err[-3000:]
    assert "no --class-map: classes 0 background, 1 1, 2 2 (the ids the raster holds)" in (
        caplog.text
    )
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([{"id": 0, "name": "background"}, {"id": 1, "name": "1"},
                                  {"id": 2, "name": "2"}]))  # fmt: skip
    code, err = run_cli("vectorize", FTW_PREDICTION, "--class-map", listed, "--out",
                        tmp_path / "listed.gpkg")  # fmt: skip
    assert code == 0, err[-3000:]
    ours = gpd.read_file(out, layer="polygons")
    assert set(ours.class_name) == {"1", "2"}
    assert ours.equals(gpd.read_file(tmp_path / "listed.gpkg", layer="polygons"))

    mask = write_like(FTW_PREDICTION, tmp_path / "fields.tif",
                      (rasterio.open(FTW_PREDICTION).read() == 1).astype("uint8"))  # fmt: skip
    with rasterio.open(mask, "r+") as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (35, 139, 69, 255)})
    code, err = run_cli("vectorize", mask, "--out", tmp_path / "fields.gpkg")
    assert code == 0, err[-3000:]
    fields = gpd.read_file(tmp_path / "fields.gpkg", layer="polygons")
    assert set(fields.class_name) == {"fields"} and len(fields) > 100
    style = gpd.read_file(tmp_path / "fields.gpkg", layer="layer_styles")
    assert "35,139,69" in style.styleQML[0]


def test_a_raster_without_crs_is_measured_in_pixels_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The FTW prediction (10 m pixels) without its CRS: areas, perimeters, --min-area and
    --simplify are in pixels, the columns are named so, and the files are written without a
    library warning (the log says it once)."""
    raster = write_like(FTW_PREDICTION, tmp_path / "nocrs.tif", crs=None)
    with rasterio.open(raster) as src:
        data = src.read(1)
        assert src.crs is None and src.transform.a == 10.0
    everything = polygonize(raster, raster, CLASSES, min_area=0.0, simplify=0.0)
    assert list(everything.columns[4:6]) == ["area_px", "perimeter_px"]
    assert "area_m2" not in everything.columns and everything.crs is None
    for c in (1, 2):
        assert everything[everything.class_id == c].area_px.sum() == (data == c).sum()
    np.testing.assert_allclose(everything.perimeter_px, everything.geometry.length / 10.0)
    large = polygonize(raster, raster, CLASSES, min_area=50.0, simplify=0.0)
    assert len(everything) > len(large) > 0 and large.area_px.min() >= 50.0
    assert (
        "nocrs.tif has no CRS" in caplog.text
        and "--min-area and --simplify in pixels" in caplog.text
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        totals = write_polygons(
            large, tmp_path / "p.gpkg", CLASSES, timestamp="2021-06-17T10:30:00.000Z",
            parquet=tmp_path / "p.parquet",
        )  # fmt: skip
    gpkg = gpd.read_file(tmp_path / "p.gpkg", layer="polygons")
    assert gpkg.crs is None and gpkg.area_px.sum() == pytest.approx(large.area_px.sum())
    assert totals.unit == "px"
    assert sum(totals.area.values()) == pytest.approx(large.area_px.sum(), abs=0.1)
    fields = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert len(fields) == len(large) and fields["area"].isna().all()


def test_class_names_beyond_ascii_under_an_ascii_locale(tmp_path: Path) -> None:
    """A class map in UTF-8 with French and Russian names, used where the locale is plain ASCII
    (LC_ALL=C without Python's UTF-8 coercion): the map is read as UTF-8 and the names the
    terminal cannot show are printed escaped. Before, the map was read in the locale's encoding
    (UnicodeDecodeError), and printing the summary failed after the polygons were written."""
    class_map = tmp_path / "classes.yaml"
    class_map.write_text(
        'classes:\n  - {name: fond, values: [0]}\n  - {name: "пшеница / blé", values: [1]}\n',
        encoding="utf-8",
    )
    out = tmp_path / "fields.gpkg"
    ascii_locale = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0",
                    "PYTHONUTF8": "0"}  # fmt: skip
    mask = DATA / "nebraska_center_pivots_landsat" / "pivots_mask.tif"
    proc = cli_process("vectorize", mask, "--class-map", class_map, "--out", out, env=ascii_locale)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "19 polygons (19 \\u043f\\u0448" in proc.stdout
    assert set(gpd.read_file(out, layer="polygons").class_name) == {"пшеница / blé"}


@pytest.mark.parametrize(("pixel_m", "options"), [(0.5, []), (30.0, ["--simplify", "30"])])
def test_polygons_are_simplified_by_at_most_a_pixel(
    tmp_path: Path, pixel_m: float, options: list[str]
) -> None:
    """The pivots mask as if at 0.5 m: by default the tolerance is one pixel (2 m moved its
    outlines by 3 pixels), so pixel stairs go (far fewer vertices than the pixel outlines,
    `--simplify 0`) and every polygon stays within about a pixel of its outline, at the same
    count. At its 30 m the default 2 m moves nothing (fast for lattices of fields), and
    `--simplify 30` smooths it as one pixel does at 0.5 m."""
    with rasterio.open(DATA / "nebraska_center_pivots_landsat" / "pivots_mask.tif") as src:
        profile, mask = src.profile, src.read(1)
    t = profile["transform"]
    profile["transform"] = rasterio.Affine(pixel_m, 0, t.c, 0, -pixel_m, t.f)
    raster = tmp_path / "mask.tif"
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(mask, 1)
    frames = {}
    for name, extra in (("default", []), ("given", options), ("outlines", ["--simplify", "0"])):
        out = tmp_path / f"{name}.gpkg"
        code, err = run_cli("vectorize", raster, "--class-map", PIVOT_CLASSES, "--out", out, *extra)
        assert code == 0, err[-3000:]
        frames[name] = gpd.read_file(out, layer="polygons").set_index("id")
    simplified, outlines = frames["given"], frames["outlines"]
    assert list(simplified.index) == list(outlines.index) and len(outlines) == 19
    vertices = {k: shapely.get_num_coordinates(f.geometry.values).sum() for k, f in frames.items()}
    assert vertices["given"] < 0.6 * vertices["outlines"]
    moved = shapely.hausdorff_distance(simplified.geometry.values, outlines.geometry.values)
    assert moved.max() <= 1.5 * pixel_m
    np.testing.assert_allclose(simplified.area_m2, outlines.area_m2, rtol=0.05, atol=pixel_m**2)
    assert (vertices["default"] == vertices["given"]) == (pixel_m == 0.5)
    print(f"{pixel_m} m: vertices {vertices}, moved at most {moved.max() / pixel_m:.2f} px")


def test_a_write_that_fails_midway_leaves_no_file_behind(tmp_path: Path) -> None:
    """Polygons that stop coming (a read that fails, Ctrl-C) leave neither temporary file, and
    the files already at the output names as they were."""
    frame = polygonize(FTW_PREDICTION, None, CLASSES)

    def failing():
        yield frame
        raise OSError("read failed")

    for name in ("p.gpkg", "p.parquet"):
        (tmp_path / name).write_bytes(b"earlier")
    with pytest.raises(OSError, match="read failed"):
        write_polygons(
            failing(), tmp_path / "p.gpkg", CLASSES, timestamp=None,
            parquet=tmp_path / "p.parquet",
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gpkg", "p.parquet"]
    assert all((tmp_path / n).read_bytes() == b"earlier" for n in ("p.gpkg", "p.parquet"))


def test_a_second_run_writing_the_same_file_stops_and_leaves_the_first_to_finish(
    tmp_path: Path,
) -> None:
    """While a run writes `--out` (its lock held), a second run into it, `--overwrite` or not,
    stops with one line and changes nothing; the first then writes its polygons whole (two
    runs at once had each renamed the other's temporary file: an incomplete GeoPackage)."""
    out = tmp_path / "fields.gpkg"
    with exclusive(out, "polygon file"):
        code, err = run_cli("vectorize", FTW_PREDICTION, "--out", out, "--overwrite")
        assert code == 2 and "another run is writing this polygon file now" in err, err
        assert [p.name for p in tmp_path.iterdir()] == [".fields.gpkg.lock"]
    code, err = run_cli("vectorize", FTW_PREDICTION, "--out", out)
    assert code == 0, err
    assert len(gpd.read_file(out, layer="polygons")) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["fields.gpkg"]


def test_the_style_of_fields_lists_no_boundary_class(tmp_path: Path) -> None:
    """A boundary class is given back to the fields it outlines, so no polygon has it: the
    GeoPackage's default style lists the fields only (it had an empty "field boundary")."""
    out = tmp_path / "fields.gpkg"
    ftw_classes = ROOT / "examples" / "ftw_classes.yaml"
    code, err = run_cli("vectorize", FTW_PREDICTION, "--class-map", ftw_classes, "--out", out)
    assert code == 0, err
    assert set(gpd.read_file(out, layer="polygons").class_name) == {"field"}
    style = gpd.read_file(out, layer="layer_styles").styleQML[0]
    assert 'label="field"' in style and "boundary" not in style
