"""`predict --aoi`: a real adapter over the bundled Nebraska scene, through the CLI. Inside the
area the outputs are those of a prediction of the whole scene, pixel for pixel; outside its
polygons they are no data; scenes it misses are left out."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import geometry_mask
from rasterio.windows import from_bounds

from geo.ingest import IngestConfig, predict_options, run_ingest
from tests.support.cli import refused, run_cli
from tests.support.paths import NEBRASKA, RGB_BYTE

STEM = NEBRASKA.stem


def predict(run: Path, out: Path, *extra: object, scenes: tuple[Path, ...] = (NEBRASKA,)) -> None:
    argv = ["predict", *scenes, "--model", run, "--out", out, "--device", "cpu", *extra]
    code, err = run_cli(*argv)
    assert code == 0, err[-3000:]


@pytest.fixture(scope="module")
def whole(pivots_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole scene predicted, to compare with."""
    out = tmp_path_factory.mktemp("whole")
    predict(pivots_run, out)
    return out


def circle(tmp_path: Path) -> Path:
    """A disc of 3 km radius around the labelled pivots, saved in lon/lat (another CRS than
    the scene's Albers), reaching past the scene's eastern edge."""
    with rasterio.open(NEBRASKA) as src:
        crs = src.crs.to_wkt()
    disc = shapely.Point(-661000, 2123400).buffer(3000)
    path = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[disc], crs=crs).to_crs("EPSG:4326").to_file(path)
    return path


@pytest.mark.parametrize("tile_size", [None, 96])
def test_inside_the_area_the_outputs_are_the_whole_scene_s(
    pivots_run: Path, whole: Path, tmp_path: Path, tile_size: int | None
) -> None:
    aoi, out = circle(tmp_path), tmp_path / "aoi"
    extra = [] if tile_size is None else ["--tile-size", tile_size]
    predict(pivots_run, out, "--aoi", aoi, *extra)
    reference = whole
    if tile_size is not None:
        reference = tmp_path / "whole"
        predict(pivots_run, reference, *extra)
    with rasterio.open(out / f"{STEM}_classes.tif") as cut, rasterio.open(NEBRASKA) as scene:
        classes, grid, shape, crs = cut.read(1), cut.transform, cut.shape, cut.crs
        assert shape[0] < scene.height and shape[1] < scene.width
        window = from_bounds(*cut.bounds, transform=scene.transform)
    area = gpd.read_file(aoi).to_crs(crs.to_wkt())
    inside = geometry_mask(area.geometry, out_shape=shape, transform=grid, invert=True)
    assert 0.25 < inside.mean() < 0.75  # the area, and a window's reach around it
    assert np.array_equal(classes == 255, ~inside)  # no data exactly outside the polygons
    for kind in ("classes", "probability"):
        with (
            rasterio.open(out / f"{STEM}_{kind}.tif") as a,
            rasterio.open(reference / f"{STEM}_{kind}.tif") as b,
        ):
            assert np.array_equal(a.read(1)[inside], b.read(1, window=window)[inside])

    polygons = gpd.read_file(out / f"{STEM}_polygons.gpkg", layer="polygons")
    assert len(polygons) and polygons.within(area.union_all().buffer(30 * 1.5)).all()
    manifest = json.loads((out / f"{STEM}_manifest.json").read_text())
    assert manifest["source"] == str(NEBRASKA)
    assert manifest["parameters"]["aoi"]["file"] == str(aoi)
    col, row = int(window.col_off), int(window.row_off)
    assert manifest["parameters"]["aoi"]["window"] == [col, row, shape[1], shape[0]]


def test_scenes_the_area_misses_are_left_out(
    pivots_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """RGB.byte.tif is a Landsat 7 scene far from Nebraska: left out with a warning; the run
    predicts the scene the area lies in."""
    aoi, out = circle(tmp_path), tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="geo"):
        predict(pivots_run, out, "--aoi", aoi, scenes=(NEBRASKA, RGB_BYTE))
    assert f"1 scene(s) outside --aoi {aoi} are left out: {RGB_BYTE}" in caplog.text
    assert (out / f"{STEM}_classes.tif").exists()
    assert not (out / "RGB.byte_classes.tif").exists()


def test_an_area_that_misses_every_scene_is_refused(pivots_run: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(10, 45, 11, 46)], crs="EPSG:4326").to_file(far)
    argv = ["predict", NEBRASKA, "--model", pivots_run, "--out", work, "--aoi", far]
    refused(work, argv, f"--aoi {far}: the area overlaps none of the 1 scene(s)")
    missing = ["predict", NEBRASKA, "--model", pivots_run, "--out", work, "--aoi", "absent.gpkg"]
    refused(work, missing, "absent.gpkg")


def test_ingest_cuts_each_scene_of_a_folder_to_the_area(pivots_run: Path, tmp_path: Path) -> None:
    """A scene the area misses has nothing to predict (recorded, checked again when it
    changes, no failure); the other is predicted within it, as `predict --aoi` does."""
    inbox, out, aoi = tmp_path / "inbox", tmp_path / "out", circle(tmp_path)
    inbox.mkdir()
    shutil.copy(NEBRASKA, inbox / NEBRASKA.name)
    shutil.copy(RGB_BYTE, inbox / RGB_BYTE.name)
    values = {"source": str(inbox), "model": str(pivots_run), "out": str(out), "device": "cpu",
              "aoi": str(aoi)}  # fmt: skip
    ingest = IngestConfig.pick(values)
    result = run_ingest(ingest, predict_options(ingest, values))
    assert list(result.predicted) == [str(inbox / NEBRASKA.name)]
    assert "the AOI does not overlap scene" in result.empty[str(inbox / RGB_BYTE.name)]
    assert not result.refused and not result.failed
    with rasterio.open(out / f"{STEM}_classes.tif") as cut, rasterio.open(NEBRASKA) as scene:
        assert cut.shape[0] < scene.height and cut.shape[1] < scene.width
