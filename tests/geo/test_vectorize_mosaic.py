"""`vectorize` of several class rasters on one grid (neighbouring scenes' predictions) into one
layer: the same polygons as the scene they were cut from, fields across the cuts whole, each
polygon naming its raster and carrying its date; rasters on other grids (another UTM zone, a
shifted grid) resampled onto the mosaic's; rasters that cannot join refused up front."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from geo.vectorize import VectorizeConfig, vectorize
from geo.vectorize.run import check_vectorize
from tests.support.cli import refused, run_cli, write_like
from tests.support.paths import EXAMPLES, FTW_PREDICTION

FTW_MAP = EXAMPLES / "ftw_classes.yaml"
# Four overlapping parts of the real FTW prediction (289 x 189 px of fields, 10 m), in the
# order given on the command line: (col, row, width, height), and the date each records.
PARTS = {
    "nw": ((0, 0, 160, 100), "2021:06:17 10:20:00"),
    "ne": ((130, 0, 159, 100), "2021:06:17 10:20:00"),
    "sw": ((0, 80, 160, 109), "2021:09:25 10:30:00"),
    "se": ((130, 80, 159, 109), None),
}


def cut(folder: Path, name: str, window: tuple[int, int, int, int], date: str | None, **profile):
    """A part of the FTW prediction, on its grid, as its own GeoTIFF."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(FTW_PREDICTION) as src:
        win = Window(*window)
        meta = {**src.profile, "width": win.width, "height": win.height}
        meta.update({"transform": src.window_transform(win), **profile})
        path = folder / f"{name}_classes.tif"
        with rasterio.open(path, "w", **meta) as dst:
            dst.write(src.read(1, window=win), 1)
            if date is not None:
                dst.update_tags(TIFFTAG_DATETIME=date)
    return path


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    return [cut(tmp_path / "parts", name, win, date) for name, (win, date) in PARTS.items()]


def polygons(path: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(path, layer="polygons").sort_values("id").reset_index(drop=True)


def test_parts_give_the_polygons_of_the_whole(tmp_path: Path, parts: list[Path]) -> None:
    """Fields cut by the parts' edges come out whole, as from the raster they were cut from;
    each names the part drawn on top at its representative point (the last given)."""
    code, err = run_cli(
        "vectorize", FTW_PREDICTION, "--class-map", FTW_MAP, "--out", tmp_path / "whole.gpkg"
    )
    assert code == 0, err
    code, err = run_cli(
        "vectorize", *parts, "--class-map", FTW_MAP, "--out", tmp_path / "mosaic.gpkg"
    )
    assert code == 0, err
    whole, mosaic = polygons(tmp_path / "whole.gpkg"), polygons(tmp_path / "mosaic.gpkg")
    assert len(whole) > 200 and len(mosaic) == len(whole)
    assert list(mosaic.id) == list(whole.id)
    assert mosaic.geometry.geom_equals_exact(whole.geometry, tolerance=1e-6).all()
    np.testing.assert_allclose(mosaic.area_m2, whole.area_m2)
    assert set(whole.source) == {FTW_PREDICTION.name}
    with rasterio.open(FTW_PREDICTION) as src:
        top = src.transform.f
        x0 = src.transform.c
    points = mosaic.geometry.representative_point()
    col, row = (points.x - x0) / 10, (top - points.y) / 10
    expected = np.where(row >= 80, np.where(col >= 130, "se", "sw"),
                        np.where(col >= 130, "ne", "nw"))  # fmt: skip
    assert list(mosaic.source) == [f"{e}_classes.tif" for e in expected]


def test_a_glob_pattern_and_fiboa_dates_of_each_part(
    tmp_path: Path, parts: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """`'parts/*_classes.tif'` takes the parts in name order; each field's fiboa datetime is
    that of the part it comes from (empty for the undated one)."""
    caplog.set_level(logging.INFO, logger="geo.vectorize")
    pattern = str(tmp_path / "parts" / "*_classes.tif")
    for rasters, out in (([pattern], "fields.parquet"), (parts, "given.parquet"),
                         ([pattern], "fields.gpkg")):  # fmt: skip
        code, err = run_cli("vectorize", *rasters, "--class-map", FTW_MAP, "--out", tmp_path / out)
        assert code == 0, err
    assert "4 class rasters as one mosaic" in caplog.text
    fields = gpd.read_parquet(tmp_path / "fields.parquet")
    assert len(fields) == len(gpd.read_parquet(tmp_path / "given.parquet"))
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))
    gpkg_out = tmp_path / "fields.gpkg"
    sources = polygons(gpkg_out).set_index("id").source
    dates = fields.set_index("id").determination_datetime
    layer_dates = polygons(gpkg_out).set_index("id").date  # the GeoPackage's, for QGIS filters
    assert layer_dates.notna().any() and layer_dates.isna().any()
    pd.testing.assert_series_equal(
        layer_dates.sort_index(), dates.sort_index(), check_names=False, check_dtype=False
    )
    expected = {
        "nw": pd.Timestamp("2021-06-17 10:20:00", tz="UTC"),
        "ne": pd.Timestamp("2021-06-17 10:20:00", tz="UTC"),
        "sw": pd.Timestamp("2021-09-25 10:30:00", tz="UTC"),
    }
    for field_id, source in sources.items():
        date = dates[field_id]
        want = expected.get(source.removesuffix("_classes.tif"))
        assert (pd.isna(date) and want is None) or date == want, (field_id, source, date)
    assert set(sources) == {f"{n}_classes.tif" for n in PARTS}
    with sqlite3.connect(gpkg_out) as db:  # what GDAL before 3.7 (QGIS 3.22) reads silently
        (version,) = db.execute("PRAGMA user_version").fetchone()
        stored = {d for (d,) in db.execute("SELECT DISTINCT date FROM polygons") if d}
    assert version == 10200  # GeoPackage 1.2: of 1.4, "may only be partially supported"
    assert stored == {"2021-06-17T10:20:00.000Z", "2021-09-25T10:30:00.000Z"}  # as 1.2 has it


def test_a_part_without_data_shows_the_one_below(tmp_path: Path, parts: list[Path]) -> None:
    """Where the later part has no data, the earlier part's classes are drawn: the mosaic of a
    west half and an east half that is no data over their overlap is the whole."""
    west = cut(tmp_path / "halves", "west", (0, 0, 160, 189), None)
    east = cut(tmp_path / "halves", "east", (130, 0, 159, 189), None)
    with rasterio.open(east, "r+") as dst:
        pixels = dst.read(1)
        pixels[:, :30] = 0  # FTW's nodata
        dst.write(pixels, 1)
    code, err = run_cli(
        "vectorize", west, east, "--class-map", FTW_MAP, "--out", tmp_path / "halves.gpkg"
    )
    assert code == 0, err
    code, err = run_cli(
        "vectorize", FTW_PREDICTION, "--class-map", FTW_MAP, "--out", tmp_path / "whole.gpkg"
    )
    assert code == 0, err
    halves, whole = polygons(tmp_path / "halves.gpkg"), polygons(tmp_path / "whole.gpkg")
    assert list(halves.id) == list(whole.id)
    assert halves.geometry.geom_equals_exact(whole.geometry, tolerance=1e-6).all()


def vectorized(out: Path, *args: object) -> gpd.GeoDataFrame:
    """The polygons `vectorize ARGS --class-map ftw_classes.yaml --out OUT` writes."""
    code, err = run_cli("vectorize", *args, "--class-map", FTW_MAP, "--out", out)
    assert code == 0, err
    return polygons(out)


def regridded(source: Path, target: Path, crs: str, pixel: float = 10) -> Path:
    """`source` reprojected (nearest, `pixel` m pixels) into `crs`: the same area predicted in a
    neighbouring UTM zone."""
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=pixel
        )
        meta = {**src.profile, "crs": crs, "transform": transform, "width": width,
                "height": height}  # fmt: skip
        with rasterio.open(target, "w", **meta) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)
            dst.update_tags(**src.tags())
    return target


def scores_of(classes: Path, value: int) -> Path:
    """A probability raster for `classes`: `value` over every pixel with data."""
    path = classes.with_name(classes.name.replace("_classes", "_probability"))
    with rasterio.open(classes) as src:
        meta, pixels = src.profile, src.read(1, masked=True)
    with rasterio.open(path, "w", **{**meta, "nodata": 0}) as dst:
        dst.write(np.where(pixels.mask, 0, value).astype(meta["dtype"]), 1)
    return path


def test_a_scene_in_the_next_utm_zone_is_resampled_and_joins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The east half of the scene predicted in UTM zone 32 (the scene lies in zone 33, by the
    zones' edge): resampled onto the west half's grid with a warning, its fields joined to the
    west half's across the seam, its polygons named after it and scored with its scores."""
    west = cut(tmp_path / "halves", "west", (0, 0, 160, 189), None)
    east = regridded(cut(tmp_path / "utm33", "east", (130, 0, 159, 189), None),
                     tmp_path / "halves" / "east_classes.tif", "EPSG:32632")  # fmt: skip
    score_rasters = [scores_of(west, 150), scores_of(east, 200)]
    halves = vectorized(tmp_path / "halves.gpkg", west, east, "--scores", *score_rasters)
    assert "west_classes.tif (nearest neighbour) to join the mosaic: " in caplog.text
    assert "east_classes.tif (in EPSG:32632, not EPSG:32633)" in caplog.text
    whole = vectorized(tmp_path / "whole.gpkg", FTW_PREDICTION)
    assert abs(len(halves) - len(whole)) <= 0.05 * len(whole)
    with rasterio.open(FTW_PREDICTION) as src:
        seam = src.transform.c + 130 * src.transform.a  # where the east half starts
    across = whole[(whole.bounds.minx < seam - 20) & (whole.bounds.maxx > seam + 20)]
    assert len(across) >= 5
    for field in across.geometry:
        overlaps = halves[halves.intersects(field)]
        best = max(overlaps.intersection(field).area / overlaps.union(field).area)
        assert best > 0.9, best  # one polygon, not a west and an east half
    side = np.where(halves.geometry.representative_point().x < seam, "west", "east")
    assert list(halves.source) == [f"{s}_classes.tif" for s in side]
    inside_east = halves[halves.bounds.minx > seam]
    inside_west = halves[halves.bounds.maxx < seam]
    assert len(inside_east) > 20 and len(inside_west) > 20
    np.testing.assert_allclose(inside_east.score, 200 / 255, atol=1e-3)
    np.testing.assert_allclose(inside_west.score, 150 / 255, atol=1e-3)


def test_of_crss_shared_by_as_many_rasters_the_finest_pixels_are_the_grid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One raster in each of two CRSs, the coarser given first: the mosaic takes the finer
    one's grid (it took the first given's, resampling 10 m pixels onto 30 m)."""
    west = cut(tmp_path / "halves", "west", (0, 0, 160, 189), None)
    east = regridded(cut(tmp_path / "utm33", "east", (130, 0, 159, 189), None),
                     tmp_path / "halves" / "east_classes.tif", "EPSG:32632", pixel=30)  # fmt: skip
    config = VectorizeConfig(rasters=[str(east), str(west)], class_map=str(FTW_MAP),
                             out=str(tmp_path / "f.gpkg"))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geo"):
        check_vectorize(config)
    assert f"onto the grid of {west} (nearest neighbour) to join the mosaic: {east} (in " in (
        caplog.text
    )


@pytest.mark.parametrize("stored", [{}, {"dtype": "int8", "nodata": None}], ids=["uint8", "int8"])
def test_a_part_on_a_shifted_grid_is_resampled(
    tmp_path: Path, parts: list[Path], caplog: pytest.LogCaptureFixture, stored: dict
) -> None:
    """A part whose grid is shifted by half a pixel joins the mosaic, resampled, with a warning;
    the fields come out as from the whole (within a few). Stored as int8 without nodata (whose
    copy's no data, 255, needs a wider type), the same."""
    with rasterio.open(parts[1]) as src:
        shifted = src.transform @ rasterio.Affine.translation(0.5, 0)
    half = cut(tmp_path / "shifted", "ne", (130, 0, 159, 100), None, transform=shifted, **stored)
    config = VectorizeConfig(
        rasters=[str(p) for p in (parts[0], half, *parts[2:])], class_map=str(FTW_MAP),
        out=str(tmp_path / "shifted.gpkg"),
    )  # fmt: skip
    folder = Path(check_vectorize(config).folder.name)  # type: ignore[union-attr]
    assert (folder / "1_classes.tif").exists()  # the resampled copy
    vectorize(config)
    assert not folder.exists()  # removed once the polygons are written
    first = polygons(tmp_path / "shifted.gpkg")
    (tmp_path / "shifted.gpkg").unlink()  # the layer removed: the same config, in this process
    vectorize(config)
    mosaic = polygons(tmp_path / "shifted.gpkg")
    assert mosaic.geometry.geom_equals(first.geometry).all()
    assert "ne_classes.tif (a grid shifted by part of a pixel)" in caplog.text
    whole = vectorized(tmp_path / "whole.gpkg", FTW_PREDICTION)
    assert abs(len(mosaic) - len(whole)) <= 0.05 * len(whole)
    assert "ne_classes.tif" in set(mosaic.source)


def test_rasters_that_do_not_fit_are_refused_up_front(tmp_path: Path, parts: list[Path]) -> None:
    """A raster without a CRS, other classes, scores that do not pair with the class rasters:
    one line naming the raster, nothing written."""
    out = ["--class-map", FTW_MAP, "--out", tmp_path / "f.gpkg"]
    bare = cut(tmp_path / "bad", "bare", (0, 0, 50, 50), None, crs=None)
    refused(
        tmp_path, ["vectorize", parts[0], bare, *out],
        "bare_classes.tif: has no CRS; class rasters vectorised together must be georeferenced",
    )  # fmt: skip
    refused(
        tmp_path, ["vectorize", *parts, *out, "--scores", parts[0]],
        "--scores: 1 score raster(s) for 4 class raster(s); give one per class raster",
    )  # fmt: skip
    refused(
        tmp_path, ["vectorize", parts[0], parts[1], *out, "--scores", parts[1], parts[0]],
        "--scores", "ne_classes.tif: not on the grid of", "nw_classes.tif",
    )  # fmt: skip
    listed = []
    for name, edge in (("a", "boundary"), ("b", "edge")):
        classes = json.dumps([{"id": 0, "name": "background"}, {"id": 1, "name": "field"},
                              {"id": 2, "name": edge}])  # fmt: skip
        path = cut(tmp_path / "listed", name, (0, 0, 50, 50), None)
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(CLASSES=classes)
        listed.append(path)
    refused(
        tmp_path, ["vectorize", *listed, "--out", tmp_path / "f.gpkg"],
        "b_classes.tif: lists other classes than", "give --class-map",
    )  # fmt: skip
    refused(
        tmp_path, ["vectorize", parts[0], listed[0], "--out", tmp_path / "f.gpkg"],
        "nw_classes.tif: lists no classes, unlike", "a_classes.tif; give --class-map",
    )  # fmt: skip


def test_a_probability_raster_among_predictions_is_refused(tmp_path: Path) -> None:
    """`predictions/*` takes the probability rasters too: refused as no class ids, by name."""
    classes = tmp_path / "a_classes.tif"
    with rasterio.open(FTW_PREDICTION) as src:
        meta, pixels = src.profile, src.read(1)
    with rasterio.open(classes, "w", **meta) as dst:
        dst.write(pixels, 1)
        dst.update_tags(CLASSES='[{"id": 0, "name": "background"}, {"id": 1, "name": "field"}, '
                        '{"id": 2, "name": "boundary"}]')  # fmt: skip
    with rasterio.open(tmp_path / "a_probability.tif", "w", **meta) as dst:
        dst.write(np.where(pixels > 0, 200, 0).astype("uint8"), 1)
    refused(
        tmp_path, ["vectorize", str(tmp_path / "a_*.tif"), "--out", tmp_path / "f.gpkg"],
        "a_probability.tif: holds value(s) 200", "not NAME_probability.tif",
    )  # fmt: skip


def south_up(source: Path, folder: Path) -> Path:
    """The raster stored south-up: rows from south to north, a positive pixel height."""
    with rasterio.open(source) as src:
        meta, pixels, t = src.profile, src.read(1), src.transform
        flipped = rasterio.Affine(t.a, 0.0, t.c, 0.0, -t.e, t.f + t.e * src.height)
    path = folder / source.name
    folder.mkdir(exist_ok=True)
    with rasterio.open(path, "w", **{**meta, "transform": flipped}) as dst:
        dst.write(pixels[::-1], 1)
    return path


def test_south_up_parts_give_the_fields_of_the_whole(tmp_path: Path, parts: list[Path]) -> None:
    """Parts stored south-up are placed by their own transforms: the fields of the whole raster
    stored so (the give-back of boundary pixels follows the rows' order, so the whole is
    flipped too)."""
    flipped = [south_up(part, tmp_path / "parts-south-up") for part in parts]
    whole = south_up(FTW_PREDICTION, tmp_path / "whole-south-up")
    for rasters, out in ((flipped, "flipped.gpkg"), ([whole], "whole.gpkg")):
        code, err = run_cli("vectorize", *rasters, "--class-map", FTW_MAP, "--out", tmp_path / out)
        assert code == 0, err
    mosaic, one = polygons(tmp_path / "flipped.gpkg"), polygons(tmp_path / "whole.gpkg")
    assert len(mosaic) == len(one) > 200 and list(mosaic.id) == list(one.id)
    assert mosaic.geometry.geom_equals_exact(one.geometry, tolerance=1e-6).all()
    assert set(mosaic.source) == {f"{name}_classes.tif" for name in PARTS}  # each found


def test_a_south_up_part_among_north_up_ones_joins(
    tmp_path: Path, parts: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """One part stored south-up, given first, among north-up ones: the others take the grid of
    a north-up one (of equal pixels), the flipped part is resampled onto it, pixel for pixel,
    and every polygon still names its part: the fields of the whole."""
    flipped = south_up(parts[0], tmp_path / "flipped")
    mosaic = vectorized(tmp_path / "mixed.gpkg", flipped, *parts[1:])
    whole = vectorized(tmp_path / "whole.gpkg", FTW_PREDICTION)
    assert "nw_classes.tif (stored south-up)" in caplog.text
    assert list(mosaic.id) == list(whole.id)
    assert mosaic.geometry.geom_equals_exact(whole.geometry, tolerance=1e-6).all()
    assert "" not in set(mosaic.source) and "nw_classes.tif" in set(mosaic.source)


def test_where_scenes_of_several_dates_overlap_the_newest_shows(tmp_path: Path) -> None:
    """Two predictions of one area (a June scene and a September one, 0 background, no nodata),
    given newest first: the September one is drawn on top, as the whole layer and as every
    polygon's source. Without a date on one of them, the order given decides."""
    with rasterio.open(FTW_PREDICTION) as src:
        meta, pixels = {**src.profile, "nodata": None}, src.read(1)
    scenes = {}
    for name, data, date in (("september", pixels, "2021:09:25 10:30:00"),
                             ("june", np.roll(pixels, 40, axis=1), "2021:06:17 10:20:00"),
                             ("undated", np.roll(pixels, 40, axis=1), None)):  # fmt: skip
        scenes[name] = tmp_path / f"{name}_classes.tif"
        with rasterio.open(scenes[name], "w", **meta) as dst:
            dst.write(data, 1)
            if date:
                dst.update_tags(TIFFTAG_DATETIME=date)
    runs = {
        "alone.gpkg": [scenes["september"]],
        "dated.gpkg": [scenes["september"], scenes["june"]],
        "undated.gpkg": [scenes["september"], scenes["undated"]],
        "undated-alone.gpkg": [scenes["undated"]],
    }
    for out, rasters in runs.items():
        code, err = run_cli("vectorize", *rasters, "--class-map", FTW_MAP, "--out", tmp_path / out)
        assert code == 0, err
    alone, dated = polygons(tmp_path / "alone.gpkg"), polygons(tmp_path / "dated.gpkg")
    assert list(dated.id) == list(alone.id) and set(dated.source) == {"september_classes.tif"}
    assert dated.geometry.geom_equals_exact(alone.geometry, tolerance=1e-6).all()
    undated = polygons(tmp_path / "undated.gpkg")
    assert list(undated.id) == list(polygons(tmp_path / "undated-alone.gpkg").id)
    assert set(undated.source) == {"undated_classes.tif"}


def test_a_raster_too_large_for_the_mosaic_s_grid_is_refused(
    tmp_path: Path, parts: list[Path]
) -> None:
    """A class raster in lon/lat over 10 x 10 degrees (100 x 100 px of 0.1 degree) would take
    billions of pixels on the 10 m grid of the others: refused by name, nothing written."""
    wide = tmp_path / "wide_classes.tif"
    lonlat = rasterio.Affine(0.1, 0, 8.0, 0, -0.1, 53.0)
    meta = {"driver": "GTiff", "width": 100, "height": 100, "count": 1, "dtype": "uint8",
            "crs": "EPSG:4326", "transform": lonlat}  # fmt: skip
    with rasterio.open(wide, "w", **meta) as dst:
        dst.write(np.ones((1, 100, 100), dtype="uint8"))
    refused(
        tmp_path, ["vectorize", parts[0], parts[1], wide, "--class-map", FTW_MAP,
                   "--out", tmp_path / "f.gpkg"],
        "wide_classes.tif: would take", "pixels on the grid it joins",
    )  # fmt: skip


def moved(path: Path, cols: int) -> Path:
    """`path` moved `cols` pixels east on its grid, as another file."""
    with rasterio.open(path) as src:
        transform = src.transform @ rasterio.Affine.translation(cols, 0)
    return write_like(path, path.with_name(f"{path.stem}_{cols}{path.suffix}"), transform=transform)


def test_scenes_far_apart_are_vectorised_group_by_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two farms 200 km apart in one layer: the mosaic's parts are the groups of rasters near
    each other, each read in bands only as wide as itself (not 20,000 columns of no data), and
    the layer holds the polygons of each group alone, their ids counted on the whole mosaic."""
    caplog.set_level(logging.INFO, logger="geo.vectorize")
    west = cut(tmp_path / "far", "west", (0, 0, 160, 189), None)
    east = cut(tmp_path / "far", "east", (130, 0, 159, 189), None)
    far = moved(east, 20_000)  # 200 km east of where it was cut
    beside = moved(east, 20_000 + 159 + 500)  # 5 km east of that: one group with it
    rasters = [west, far, beside]
    config = VectorizeConfig(rasters=[str(r) for r in rasters], class_map=str(FTW_MAP),
                             out=str(tmp_path / "layer.gpkg"))  # fmt: skip
    plan = check_vectorize(config)
    widths = []
    for part in plan.parts:
        with rasterio.open(part.classes) as src:
            widths.append(src.width)
    assert widths == [160, 159 + 500 + 159]
    assert [part.offset for part in plan.parts] == [(0, 0), (0, 20_130)]
    layer = vectorized(tmp_path / "layer.gpkg", *rasters)
    assert "3 class rasters lie in 2 groups far apart" in caplog.text
    alone = [vectorized(tmp_path / f"{r.stem}.gpkg", r) for r in rasters]
    offsets = [0, 20_130, 20_130 + 159 + 500]
    expected = pd.concat(
        [frame.assign(id=[f"{i.split('-')[0]}-{int(i.split('-')[1]) + at}" for i in frame.id])
         for frame, at in zip(alone, offsets, strict=True)], ignore_index=True,
    ).sort_values("id").reset_index(drop=True)  # fmt: skip
    assert len(layer) > 200
    assert list(layer.id) == list(expected.id)
    assert layer.geometry.geom_equals_exact(expected.geometry, tolerance=1e-6).all()
    assert list(layer.source) == list(expected.source)
    assert not Path(plan.parts[0].classes).parent.exists()  # the mosaic folder removed


def test_a_layer_whose_first_rasters_hold_no_polygons_keeps_text_columns(tmp_path: Path) -> None:
    """A raster of background alone 100 km west of the FTW prediction is vectorised first: the
    layer's text columns stay text (they were made Real from that empty first batch, and the
    267 fields' class names and sources were written as 0); a raster the tool did not make has
    no model (NULL, not an empty name). A layer of no polygons at all has the same columns."""
    with rasterio.open(FTW_PREDICTION) as src:
        shape, transform = (src.height, src.width), src.transform
    empty = np.zeros((1, *shape), np.uint8)
    west = write_like(FTW_PREDICTION, tmp_path / "west.tif", empty,
                      transform=transform @ rasterio.Affine.translation(-10_000, 0))  # fmt: skip
    layer = vectorized(tmp_path / "layer.gpkg", west, FTW_PREDICTION)
    assert len(layer) == 267 and set(layer.class_name) == {"field"}
    assert set(layer.source) == {FTW_PREDICTION.name} and layer.model.isna().all()
    info = pyogrio.read_info(tmp_path / "layer.gpkg", layer="polygons")
    types = dict(zip(info["fields"], info["dtypes"], strict=True))
    text = {name: types[name] for name in ("id", "class_name", "source", "model")}
    assert text == dict.fromkeys(text, "object"), types
    assert len(vectorized(tmp_path / "none.gpkg", west)) == 0
    info = pyogrio.read_info(tmp_path / "none.gpkg", layer="polygons")
    assert dict(zip(info["fields"], info["dtypes"], strict=True)) == types
