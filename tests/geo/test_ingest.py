"""Ingest runs (`geo.ingest.run_ingest`) with a real adapter: a folder holding the bundled scene and
files the model cannot read, written into itself run after run; a static STAC catalog of COGs
made from the bundled scenes, served over HTTP range requests by a server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import planetary_computer.sas
import planetary_computer.settings
import pytest
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.warp import calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from geo.errors import InputError
from geo.ingest import (
    RECORD_FILE,
    IngestConfig,
    IngestRecord,
    IngestResult,
    check_ingest,
    finish_ingest,
    plan_ingest,
    predict_options,
    run_ingest,
)
from geo.ingest.catalog import model_id
from geo.ingest.run import SETTLING_S
from geo.io.outputs import exclusive
from geo.io.sas import renew_tokens
from geo.predict import PredictConfig, predict, predict_planned
from tests.support.cli import run_cli, snapshot, write_like
from tests.support.http_range import RangeServer
from tests.support.paths import NEBRASKA, PIVOT_MASK, RGB_BYTE
from tests.support.quicklook import assert_last_line
from tests.support.stac_catalog import (
    AUSTRIA,
    AUSTRIA_JUNE,
    AUSTRIA_OCTOBER,
    AUSTRIA_SEPTEMBER,
    LANDSAT,
    NEBRASKA_LANDSAT,
    S2,
    add_items,
    band_path,
    build_catalog,
    item_collection,
    touch_item,
)

AUSTRIA_AOI = (13.13, 48.285, 13.138, 48.29)  # about 600 x 550 m
STAC = {"collection": S2, "bbox": list(AUSTRIA_AOI), "query": "eo:cloud_cover<50"}


def configs(run: Path, out: Path, **options: Any) -> tuple[IngestConfig, PredictConfig]:
    values = {"model": str(run), "out": str(out), "device": "cpu", "batch_size": 8, **options}
    ingest = IngestConfig.pick(values)
    return ingest, predict_options(ingest, values)


def ingest(run: Path, out: Path, **options: Any) -> IngestResult:
    return run_ingest(*configs(run, out, **options))


def record(run: Path, out: Path) -> IngestRecord:
    return IngestRecord.load(out / RECORD_FILE, model_id(str(run)))


@pytest.fixture()
def inbox(tmp_path: Path) -> Path:
    """The bundled scene folder's rasters: the scene and its one-band label mask."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    for path in (NEBRASKA, PIVOT_MASK):
        shutil.copy(path, folder / path.name)
    return folder


# --- folders -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_folder_ingested_into_itself_predicts_each_scene_once(
    pivots_run: Path, inbox: Path
) -> None:
    scene, mask = str(inbox / NEBRASKA.name), str(inbox / PIVOT_MASK.name)
    first = ingest(pivots_run, inbox, source=str(inbox))
    assert (first.found, first.new, list(first.predicted)) == (2, 2, [scene])
    assert first.refused == {
        mask: f"{mask}: band 2 out of range (the scene has bands 1..1); the model reads bands "
        "[1, 2, 3]: give a scene with them"
    }
    classes = Path(first.predicted[scene]["classes"])
    assert classes == inbox / "nebraska_landsat_albers_30m_classes.tif"
    with rasterio.open(classes) as out, rasterio.open(NEBRASKA) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
    done = record(pivots_run, inbox)
    assert set(done.done) == {scene} and set(done.skipped) == {mask} and not done.failed

    before = snapshot(inbox)
    again = ingest(pivots_run, inbox, source=str(inbox))  # its own outputs are no scenes
    assert (again.found, again.new, again.predicted, again.refused) == (2, 0, {}, {})
    after = snapshot(inbox)
    after.pop(RECORD_FILE), before.pop(RECORD_FILE), after.pop("."), before.pop(".")
    assert after == before

    write_like(NEBRASKA, inbox / PIVOT_MASK.name, crs=None)  # the refused file changes
    shutil.copy(NEBRASKA, inbox / "second.tif")  # and a new scene arrives
    third = ingest(pivots_run, inbox, source=str(inbox))
    assert (third.found, third.new, list(third.predicted)) == (3, 2, [str(inbox / "second.tif")])
    assert third.refused == {
        mask: f"{mask}: no CRS, and the model was trained on georeferenced scenes"
    }


def test_outputs_under_the_source_are_never_scenes(pivots_run: Path, inbox: Path) -> None:
    out = inbox / "predictions"
    options = {"source": str(inbox), "pattern": "**/*.tif"}
    first = ingest(pivots_run, out, **options)
    assert list(first.predicted) == [str(inbox / NEBRASKA.name)]
    assert (out / "nebraska_landsat_albers_30m_probability.tif").exists()
    again = ingest(pivots_run, out, **options)
    assert (again.found, again.new) == (2, 0)


def test_scenes_predicted_before_with_other_options_are_kept_and_said(
    pivots_run: Path, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run predicts new scenes only: one with other output options (`--min-area`) leaves the
    scenes predicted before as they were, and says so; the record keeps each scene's options."""
    out = inbox / "predictions"
    first = ingest(pivots_run, out, source=str(inbox))
    scene = str(inbox / NEBRASKA.name)
    assert first.kept is None
    assert record(pivots_run, out).done[scene]["settings"] == {
        "tile_size": None, "overlap": None, "min_area": None, "simplify": None, "aoi": None
    }  # fmt: skip
    before = snapshot(out)
    with caplog.at_level(logging.WARNING, logger="geo.ingest"):
        again = ingest(pivots_run, out, source=str(inbox), min_area=5000, simplify=2)
    expected = (
        "1 scene(s) predicted before with other options (--min-area none, now 5000; --simplify "
        "none, now 2) are kept as they were: a run predicts new scenes only (to predict every "
        f"scene again with these options, move {out / RECORD_FILE} away)"
    )
    assert (again.new, again.predicted, again.kept) == (0, {}, expected)
    assert expected in caplog.messages
    after = snapshot(out)
    after.pop(RECORD_FILE), before.pop(RECORD_FILE), after.pop("."), before.pop(".")
    assert after == before
    assert ingest(pivots_run, out, source=str(inbox)).kept is None  # the same options again


def test_when_every_new_file_is_refused_the_run_fails_with_one_line(
    pivots_run: Path, inbox: Path
) -> None:
    (inbox / NEBRASKA.name).unlink()
    with pytest.raises(InputError) as failed:
        ingest(pivots_run, inbox / "out", source=str(inbox))
    line = str(failed.value)
    assert "\n" not in line
    assert line.startswith("none of the 1 new scene(s) could be predicted: ")
    assert "pivots_mask.tif: band 2 out of range" in line and RECORD_FILE in line
    assert line.count(str(inbox / PIVOT_MASK.name)) == 1  # the scene named once
    assert list(record(pivots_run, inbox / "out").skipped) == [str(inbox / PIVOT_MASK.name)]
    rerun = ingest(pivots_run, inbox / "out", source=str(inbox))  # refused until it changes
    assert (rerun.new, rerun.predicted) == (0, {})


def test_a_file_still_being_copied_in_waits_for_the_next_run(
    pivots_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduled run finds a scene half copied: not refused as corrupt, not recorded, and the
    run does not fail; the next run predicts it whole. A truncated file that has not changed
    for longer than the settling time is refused as before."""
    folder, out = tmp_path / "inbox", tmp_path / "out"
    folder.mkdir()
    scene, whole = folder / "scene.tif", NEBRASKA.read_bytes()
    scene.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.INFO, logger="geo.ingest"):
        arriving = ingest(pivots_run, out, source=str(folder))
    assert (arriving.new, arriving.predicted, arriving.refused) == (1, {}, {})
    assert list(arriving.arriving) == [str(scene)]
    assert "corrupt or truncated raster" in arriving.arriving[str(scene)]
    assert f"left for the next run {scene}: changed " in caplog.text
    assert "re-download" not in caplog.text + arriving.arriving[str(scene)]  # it may be fine soon
    assert "1 still being written (taken next run)" in arriving.counts()
    kept = record(pivots_run, out)
    assert not (kept.done or kept.skipped or kept.failed)

    scene.write_bytes(whole)  # the copy ends
    assert list(ingest(pivots_run, out, source=str(folder)).predicted) == [str(scene)]

    stale = folder / "stale.tif"
    stale.write_bytes(whole[: len(whole) // 2])
    long_ago = time.time() - 2 * SETTLING_S
    os.utime(stale, (long_ago, long_ago))
    with pytest.raises(InputError, match="stale.tif: corrupt or truncated .*; re-download or"):
        ingest(pivots_run, out, source=str(folder))
    assert list(record(pivots_run, out).skipped) == [str(stale)]


def test_a_scene_whose_outputs_another_run_is_writing_is_retried(
    pivots_run: Path, inbox: Path
) -> None:
    """A predict deployment writing the same scene into the same folder holds its lock: not the
    scene's fault, so it is left for the next run, which predicts it (it was refused until it
    changed; then a run with only such scenes failed, exit status 2)."""
    (inbox / PIVOT_MASK.name).unlink()
    out, scene = inbox / "out", str(inbox / NEBRASKA.name)
    with exclusive(out / NEBRASKA.stem, "prediction"):
        busy = ingest(pivots_run, out, source=str(inbox))
    assert (busy.predicted, busy.failed, busy.refused) == ({}, {}, {})
    assert "another run is writing this prediction now" in busy.arriving[scene]
    kept = record(pivots_run, out)
    assert not (kept.done or kept.skipped or kept.failed)
    rerun = ingest(pivots_run, out, source=str(inbox))
    assert list(rerun.predicted) == [scene]


def test_a_scene_unlike_the_training_data_is_warned_about(
    pivots_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As `predict` warns: an 8-bit 300 m scene for a model of 16-bit 30 m Landsat scenes."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(RGB_BYTE, folder / "rgb.tif")
    with caplog.at_level(logging.WARNING, logger="geo"):
        plan = plan_ingest(*configs(pivots_run, tmp_path / "out", source=str(folder)))
    assert len(plan.scenes) == 1
    assert (
        f"{folder / 'rgb.tif'} does not look like the training data: pixels are uint8 where "
        "training scenes were int16" in caplog.text
    )


def test_a_corrupt_record_is_refused_before_any_work(pivots_run: Path, inbox: Path) -> None:
    out = inbox / "out"
    out.mkdir()
    (out / RECORD_FILE).write_text('{"format": "convlora-geo ingest record", "models": {')
    before = snapshot(inbox)
    with pytest.raises(InputError, match="unreadable ingest record .*move it away to start over"):
        check_ingest(*configs(pivots_run, out, source=str(inbox)))
    with pytest.raises(InputError, match="unreadable ingest record"):
        ingest(pivots_run, out, source=str(inbox))
    assert snapshot(inbox) == before


# --- STAC catalogs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_catalog(tmp_path_factory.mktemp("stac") / "catalog").parent


@pytest.fixture()
def catalog(built: Path, tmp_path: Path) -> Path:
    """A copy of the catalog this test may change."""
    return Path(shutil.copytree(built, tmp_path / "catalog"))


def local_stack(catalog: Path, item: Any, vrt: str, keys: list[str], target: Path) -> Path:
    """A GeoTIFF of the item's band COGs (read from disk) over the VRT's grid."""
    with rasterio.open(vrt) as src:
        profile = {**src.profile, "driver": "GTiff", "tiled": False}
        profile.pop("blockxsize"), profile.pop("blockysize")
        bounds, shape = src.bounds, (src.height, src.width)
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target, "w", **profile) as dst:
        for i, key in enumerate(keys, start=1):
            with rasterio.open(band_path(catalog, item, key)) as ref:
                window = from_bounds(*bounds, transform=ref.transform)
                pixels = ref.read(1, window=window, out_shape=shape, resampling=Resampling.bilinear)
                dst.write(pixels, i)
    return target


def test_stac_items_are_predicted_over_the_aoi_once_and_new_ones_exactly(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    keys = ["red", "green", "nir08"]  # nir08 is a 20 m band: resampled to the 10 m grid
    with RangeServer(catalog) as server:
        options = {"stac": f"{server.url}/catalog.json", "bands": ",".join(keys), **STAC}
        first = ingest(pivots_run, out, **options)
        assert list(first.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
        assert not any(r.sent == r.size for r in server.requests() if r.path.endswith(".tif"))
        assert ingest(pivots_run, out, **options).predicted == {}  # a rerun predicts nothing
        add_items(catalog, (AUSTRIA_OCTOBER,))
        assert list(ingest(pivots_run, out, **options).predicted) == [AUSTRIA_OCTOBER.id]
        touch_item(catalog, AUSTRIA_SEPTEMBER, "2021-10-07T00:00:00Z")  # reprocessed
        assert list(ingest(pivots_run, out, **options).predicted) == [AUSTRIA_SEPTEMBER.id]
    outputs = first.predicted[AUSTRIA_JUNE.id]
    assert Path(outputs["classes"]).name == f"{AUSTRIA_JUNE.id}_classes.tif"  # named by item id
    manifest = json.loads(Path(outputs["manifest"]).read_text())
    stack = local_stack(catalog, AUSTRIA_JUNE, manifest["source"], keys,
                        tmp_path / "local" / f"{AUSTRIA_JUNE.id}.tif")  # fmt: skip
    config = PredictConfig(images=[str(stack)], model=str(pivots_run), out=str(tmp_path / "here"),
                           device="cpu", batch_size=8)  # fmt: skip
    (here,) = predict(config, progress=False)
    for name in ("classes", "probability"):
        with rasterio.open(outputs[name]) as a, rasterio.open(here[name]) as b:
            assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
            assert a.shape == (58, 62)  # the area of interest, not the 256 x 256 px item
            np.testing.assert_array_equal(a.read(), b.read())
    done = record(pivots_run, out).done
    assert done[AUSTRIA_SEPTEMBER.id]["version"] == "2021-10-07T00:00:00Z"
    for name in ("classes", "probability"):  # the item's date, which GIS tools show
        with rasterio.open(outputs[name]) as written:
            assert written.tags()["TIFFTAG_DATETIME"] == "2021:06:17 10:20:00"
    fields = gpd.read_parquet(outputs["fiboa"])
    assert str(fields.determination_datetime.iloc[0]) == "2021-06-17 10:20:00+00:00"
    assert_last_line(Path(outputs["quicklook"]), f"{AUSTRIA_JUNE.id}  2021-06-17")


def test_stac_items_searched_over_polygons_are_no_data_outside_them(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    """`--aoi` with a disc inside the Austrian area: items are searched and cut over it, and
    their outputs are no data exactly outside it, as `predict --aoi` makes them."""
    west, south, east, north = AUSTRIA_AOI
    disc = shapely.Point((west + east) / 2, (south + north) / 2).buffer((east - west) / 3)
    aoi = tmp_path / "disc.geojson"
    gpd.GeoDataFrame(geometry=[disc], crs="EPSG:4326").to_file(aoi)
    with RangeServer(catalog) as server:
        options = {"stac": f"{server.url}/catalog.json", "collection": S2, "aoi": str(aoi),
                   "query": STAC["query"], "bands": "red,green,nir08"}  # fmt: skip
        result = ingest(pivots_run, tmp_path / "out", **options)
    assert list(result.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    with rasterio.open(result.predicted[AUSTRIA_JUNE.id]["classes"]) as out:
        classes, crs, grid = out.read(1), out.crs, out.transform
    area = gpd.GeoSeries([disc], crs="EPSG:4326").to_crs(crs.to_wkt())
    inside = geometry_mask(area, out_shape=classes.shape, transform=grid, invert=True)
    assert 0 < inside.mean() < 1
    np.testing.assert_array_equal(classes == 255, ~inside)


def test_a_stac_item_that_fails_is_recorded_and_retried(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    nir08 = band_path(catalog, AUSTRIA_SEPTEMBER, "nir08")
    hidden = nir08.with_suffix(".away")
    nir08.rename(hidden)  # the provider has not uploaded it yet: 404
    with RangeServer(catalog) as server:
        options = {"stac": f"{server.url}/catalog.json", "bands": "red,green,nir08", **STAC}
        assert list(ingest(pivots_run, out, **options).predicted) == [AUSTRIA_JUNE.id]
        failure = record(pivots_run, out).failed[AUSTRIA_SEPTEMBER.id]
        assert failure["attempts"] == 1 and failure["version"] == "2021-09-26T02:00:00Z"
        assert failure["reason"].startswith(
            f"AssetUnreadable: item {AUSTRIA_SEPTEMBER.id}: asset 'nir08' ({server.url}/"
        )
        with pytest.raises(InputError, match="none of the 1 new scene.*AssetUnreadable"):
            ingest(pivots_run, out, **options)  # retried, failed again: the run fails
        assert record(pivots_run, out).failed[AUSTRIA_SEPTEMBER.id]["attempts"] == 2
        hidden.rename(nir08)
        assert list(ingest(pivots_run, out, **options).predicted) == [AUSTRIA_SEPTEMBER.id]
    assert not record(pivots_run, out).failed


def test_items_the_band_map_does_not_fit_wait_for_another_map(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with RangeServer(catalog) as server:
        options = {"stac": f"{server.url}/catalog.json", **STAC}
        with pytest.raises(InputError, match=r"has no asset 'swir16'; its assets: blue, green"):
            ingest(pivots_run, out, bands="red,green,swir16", **options)
        skipped = record(pivots_run, out).skipped
        assert set(skipped) == {AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id}
        assert ingest(pivots_run, out, bands="red,green,swir16", **options).new == 0
        again = ingest(pivots_run, out, bands="red,green,blue", **options)
        assert list(again.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    with pytest.raises(InputError, match="--bands red,green: names 2 band"):
        check_ingest(*configs(pivots_run, out, stac=str(catalog), bands="red,green"))


@pytest.fixture()
def planetary_computer_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The planetary-computer package's settings and token cache, fresh for this test."""
    planetary_computer.settings.Settings.get.cache_clear()
    monkeypatch.setattr(planetary_computer.sas, "TOKEN_CACHE", {})
    yield
    planetary_computer.settings.Settings.get.cache_clear()


def test_planetary_computer_assets_are_read_with_sas_tokens(
    pivots_run: Path, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    planetary_computer_env: None,
) -> None:  # fmt: skip
    """Items whose assets lie in Azure Blob Storage, as Planetary Computer's do, and a storage
    that refuses unsigned reads (the range server as GDAL's HTTP proxy): `--sign
    planetary-computer` has the planetary-computer package ask the token service (on 127.0.0.1:
    PC_SDK_SAS_URL) for the container's SAS token, and the items are predicted; unsigned, each
    read is refused (HTTP 403) and the items are recorded as failed, for the next run; without a
    token service the run stops with one ConnectionError line."""
    blob = tmp_path / "blob"  # the storage account: one container, `sentinel`
    shutil.copytree(built, blob / "sentinel")
    token = {
        "token": "st=2026-12-07&se=2099-01-01&sp=rl&sig=TOKEN",
        "msft:expiry": "2099-01-01T00:00:00Z",
    }
    (blob / "token" / "pcdemo").mkdir(parents=True)
    (blob / "token" / "pcdemo" / "sentinel").write_text(json.dumps(token))
    items = item_collection(
        blob / "sentinel", "http://pcdemo.blob.core.windows.net/sentinel", tmp_path / "items.json"
    )
    out = tmp_path / "out"
    options = {"stac": str(items), "bands": "red,green,blue", **STAC}
    with RangeServer(blob) as server:
        server.signature = "TOKEN"
        monkeypatch.setenv("GDAL_HTTP_PROXY", server.url.removeprefix("http://"))
        monkeypatch.setenv("PC_SDK_SAS_URL", f"{server.url}/token")
        with pytest.raises(InputError, match="none of the 2 new scene.*HTTP.*403"):
            ingest(pivots_run, out, sign="none", **options)
        failed = record(pivots_run, out).failed
        assert set(failed) == {AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id}
        assert failed[AUSTRIA_JUNE.id]["reason"].endswith(
            "HTTP response code: 403 (unsigned, in Azure Blob Storage: --sign planetary-computer "
            "signs Planetary Computer's)"
        )
        monkeypatch.setenv("PC_SDK_SAS_URL", f"{server.url}/no-token-service")
        planetary_computer.settings.Settings.get.cache_clear()
        with pytest.raises(ConnectionError, match=r"^--sign planetary-computer: no SAS token"):
            ingest(pivots_run, out, sign="planetary-computer", **options)  # HTTP 404
        monkeypatch.setenv("PC_SDK_SAS_URL", f"{server.url}/token")
        planetary_computer.settings.Settings.get.cache_clear()
        server.clear()
        result = ingest(pivots_run, out, sign="planetary-computer", **options)
        reads = [r for r in server.requests() if r.path.endswith(".tif")]
    assert list(result.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    assert reads and {r.status for r in reads} <= {200, 206}
    assert [r.path for r in server.requests()].count("/token/pcdemo/sentinel") == 1  # cached
    assert not record(pivots_run, out).failed


def test_sas_tokens_that_run_out_soon_are_renewed_before_a_scene_is_read(
    pivots_run: Path, built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    planetary_computer_env: None,
) -> None:  # fmt: skip
    """A long run signs its items when it finds them and predicts the last ones long after:
    the token service's first token runs out in 5 minutes, and the storage then serves only the
    next token's reads. Each scene's VRT gets the fresh token just before it is predicted (one
    more request to the token service), and both scenes are predicted; tokens with long to run
    are left as they are."""
    blob = tmp_path / "blob"
    shutil.copytree(built, blob / "sentinel")
    service = blob / "token" / "pcdemo" / "sentinel"
    service.parent.mkdir(parents=True)

    def serve_token(signature: str, expiry: dt.datetime) -> None:
        stamp = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        token = {"token": f"st=2026-12-07&se={stamp}&sp=rl&sig={signature}", "msft:expiry": stamp}
        service.write_text(json.dumps(token))

    serve_token("FIRST", dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    items = item_collection(
        blob / "sentinel", "http://pcdemo.blob.core.windows.net/sentinel", tmp_path / "items.json"
    )
    options = {"stac": str(items), "bands": "red,green,blue", "sign": "planetary-computer", **STAC}
    with RangeServer(blob) as server:
        server.signature = "FIRST"
        monkeypatch.setenv("GDAL_HTTP_PROXY", server.url.removeprefix("http://"))
        monkeypatch.setenv("PC_SDK_SAS_URL", f"{server.url}/token")
        plan = plan_ingest(*configs(pivots_run, tmp_path / "out", **options))
        assert len(plan.scenes) == 2 and all(scene.sas_tokens for _, scene in plan.scenes)
        server.signature = "NEXT"  # the first token has run out
        serve_token("NEXT", dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
        outcomes = {c.id: predict_planned(s, plan.config, progress=False) for c, s in plan.scenes}
        result = finish_ingest(plan, outcomes)
        vrts = [Path(scene.info.path).read_text() for _, scene in plan.scenes]
        assert all("sig=NEXT" in vrt and "sig=FIRST" not in vrt for vrt in vrts)
        assert renew_tokens(plan.scenes[0][1].info.path) == 0  # good till 2099: left as it is
        tokens = [r for r in server.requests() if r.path == "/token/pcdemo/sentinel"]
    assert list(result.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    assert len(tokens) == 2  # the first, and one renewal for both scenes


def add_scene_classification(catalog: Path, scene: Any, west_of: float) -> Path:
    """Give the item a 20 m `scl` asset, as Earth Search's: cloud (9) west of x = `west_of`
    (the scene's CRS), cloud shadow (3) in the 100 m east of it, vegetation (4) elsewhere."""
    with rasterio.open(AUSTRIA) as src:
        transform = src.transform @ src.transform.scale(2)
        width, height, crs = src.width // 2, src.height // 2, src.crs
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    codes = np.where(x < west_of, 9, np.where(x < west_of + 100, 3, 4)).astype("uint8")
    folder = catalog / S2 / scene.id
    profile = {"driver": "COG", "compress": "deflate", "blocksize": 64, "dtype": "uint8",
               "count": 1, "crs": crs, "transform": transform, "width": width,
               "height": height, "nodata": 0}  # fmt: skip
    with rasterio.open(folder / "scl.tif", "w", **profile) as dst:
        dst.write(np.broadcast_to(codes, (height, width)), 1)
    item_path = folder / f"{scene.id}.json"
    item = json.loads(item_path.read_text())
    item["assets"]["scl"] = {"href": "./scl.tif", "type": "image/tiff; application=geotiff; "
                             "profile=cloud-optimized", "roles": ["data"]}  # fmt: skip
    item_path.write_text(json.dumps(item))
    return folder / "scl.tif"


def test_clouds_of_the_scene_classification_are_no_data(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    """An item with a scene classification (`scl`): its clouds and their shadows are no data in
    its prediction (so that a region layer shows an older prediction there), the rest predicted
    as without it. `--cloud-mask none` predicts the clouds too; an asset the item lacks skips
    it, naming the option."""
    with rasterio.open(AUSTRIA) as src:
        aoi = transform_bounds("EPSG:4326", src.crs, *AUSTRIA_AOI)
    middle = round((aoi[0] + aoi[2]) / 2 / 20) * 20 - 50  # on the 20 m grid
    add_scene_classification(catalog, AUSTRIA_SEPTEMBER, middle)
    options = {"stac": str(catalog / "catalog.json"), "bands": "red,green,blue", **STAC}
    masked = ingest(pivots_run, tmp_path / "masked", **options)
    plain = ingest(pivots_run, tmp_path / "plain", cloud_mask="none", **options)
    both = [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    assert list(masked.predicted) == list(plain.predicted) == both

    def classes(result: IngestResult, item: str) -> tuple[np.ma.MaskedArray, np.ndarray]:
        with rasterio.open(result.predicted[item]["classes"]) as src:
            x = src.transform.c + (np.arange(src.width) + 0.5) * src.transform.a
            return src.read(1, masked=True), x

    cloudy, x = classes(masked, AUSTRIA_SEPTEMBER.id)
    clear, _ = classes(plain, AUSTRIA_SEPTEMBER.id)
    under_cloud = x < middle + 100
    assert cloudy.mask[:, under_cloud].all() and not clear.mask[:, under_cloud].any()
    assert not cloudy.mask[:, ~under_cloud].any()
    np.testing.assert_array_equal(cloudy[:, ~under_cloud], clear[:, ~under_cloud])
    june, _ = classes(masked, AUSTRIA_JUNE.id)  # no scene classification: all predicted
    assert not june.mask.any()
    shares = [json.loads(Path(masked.predicted[i]["manifest"]).read_text())["predicted_percent"]
              for i in both]  # fmt: skip
    assert shares[0] == 100.0 and abs(shares[1] - 100 * (~under_cloud).mean()) < 0.5

    with pytest.raises(InputError, match="none of the 2 new scene"):
        ingest(pivots_run, tmp_path / "wrong", cloud_mask="cloud_cover", **options)
    skipped = record(pivots_run, tmp_path / "wrong").skipped[AUSTRIA_JUNE.id]["reason"]
    assert skipped.startswith(
        "--cloud-mask cloud_cover: item S2B_33UUP_20210617_0_L2A has no such asset; its assets:"
    )
    mended = ingest(pivots_run, tmp_path / "wrong", **options)  # the option mended: not skipped
    assert list(mended.predicted) == both


def test_an_item_all_cloud_over_the_area_has_nothing_to_predict(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    """An item whose area is all cloud holds nothing to predict: recorded as such, checked
    again only when it changes, and no failure of the run, even as its only new item."""
    with rasterio.open(AUSTRIA) as src:
        east = src.bounds.right
    add_scene_classification(catalog, AUSTRIA_SEPTEMBER, east + 1000)  # cloud everywhere
    options = {"stac": str(catalog / "catalog.json"), "bands": "red,green,blue", **STAC}
    cloudy_only = {**options, "query": "eo:cloud_cover>30"}  # September's item alone
    out = tmp_path / "out"
    alone = ingest(pivots_run, out, **cloudy_only)  # no InputError: nothing failed
    assert (alone.new, alone.predicted, alone.refused, alone.failed) == (1, {}, {}, {})
    assert alone.empty == {
        AUSTRIA_SEPTEMBER.id: f"{AUSTRIA_SEPTEMBER.id}: no clear pixel over the area (clouds, "
        "cloud shadows or no data by its 'scl' asset)"
    }
    assert alone.counts() == (
        "0 predicted, 0 skipped, 0 failed (retried next run), 1 with nothing to predict (all "
        "cloud or no data)"
    )
    assert ingest(pivots_run, out, **cloudy_only).new == 0  # not tried again as it is
    both = ingest(pivots_run, out, **options)
    assert list(both.predicted) == [AUSTRIA_JUNE.id] and not both.empty


# Landsat Collection 2 QA_PIXEL values as USGS products hold them, and whether each is masked
LANDSAT_QA = {
    21824: False,  # clear land (bit 6, confidences low)
    21952: False,  # clear water (bits 6, 7)
    30048: False,  # snow (bit 5): the ground it covers is seen
    1: True,  # fill (bit 0)
    21826: True,  # dilated cloud (bit 1)
    54596: True,  # high confidence cirrus (bit 2)
    22280: True,  # high confidence cloud (bit 3)
    23888: True,  # cloud shadow (bit 4)
}
NEBRASKA_BBOX = (-104.07, 41.845, -104.025, 41.868)  # lon/lat; about 120 x 80 pixels at 30 m


def add_landsat_qa(catalog: Path) -> tuple[Path, list[int]]:
    """Give the Landsat item a `qa_pixel` asset on its bands' grid, as USGS's Collection 2 items
    have: stripes 8 columns wide of the `LANDSAT_QA` values in turn. Returns its path and the
    value of each column."""
    with rasterio.open(band_path(catalog, NEBRASKA_LANDSAT, "B1")) as src:
        profile = {**src.profile, "dtype": "uint16", "nodata": 1}
        width, height = src.width, src.height
    values = list(LANDSAT_QA)
    columns = [values[(col // 8) % len(values)] for col in range(width)]
    path = band_path(catalog, NEBRASKA_LANDSAT, "B1").with_name("qa_pixel.tif")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.broadcast_to(np.array(columns, "uint16"), (height, width)), 1)
    item_path = path.with_name(f"{NEBRASKA_LANDSAT.id}.json")
    item = json.loads(item_path.read_text())
    roles = ["cloud", "cloud-shadow", "snow-ice", "water-mask"]  # as USGS's items say
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    item["assets"]["qa_pixel"] = {"href": "./qa_pixel.tif", "type": cog, "roles": roles}
    item_path.write_text(json.dumps(item))
    return path, columns


def test_landsat_qa_bit_flags_mask_clouds_shadows_and_fill(
    pivots_run: Path, catalog: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Landsat Collection 2 item's `qa_pixel` masks it by default: pixels flagged fill,
    dilated cloud, cirrus, cloud or cloud shadow are no data in its prediction; clear land,
    water and snow are predicted as without the mask."""
    qa_path, columns = add_landsat_qa(catalog)
    options = {"stac": str(catalog / "catalog.json"), "bands": "red,green,blue",
               "collection": LANDSAT, "bbox": list(NEBRASKA_BBOX)}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="geo"):
        masked = ingest(pivots_run, tmp_path / "masked", **options)
    assert f"{NEBRASKA_LANDSAT.id}: clouds masked by its 'qa_pixel' asset (Landsat" in caplog.text
    plain = ingest(pivots_run, tmp_path / "plain", cloud_mask="none", **options)
    with rasterio.open(masked.predicted[NEBRASKA_LANDSAT.id]["classes"]) as src:
        cloudy = src.read(1, masked=True)
        with rasterio.open(qa_path) as qa:  # the QA column under each column of the output
            col0 = round((src.transform.c - qa.transform.c) / qa.transform.a)
    with rasterio.open(plain.predicted[NEBRASKA_LANDSAT.id]["classes"]) as src:
        clear = src.read(1, masked=True)
    flagged = np.array([LANDSAT_QA[v] for v in columns[col0 : col0 + cloudy.shape[1]]])
    assert flagged.any() and not flagged.all() and not clear.mask.any()
    assert cloudy.mask[:, flagged].all() and not cloudy.mask[:, ~flagged].any()
    np.testing.assert_array_equal(cloudy[:, ~flagged], clear[:, ~flagged])


def test_a_stac_item_whose_pixels_cannot_be_read_midway_is_retried(
    pivots_run: Path, catalog: Path, tmp_path: Path
) -> None:
    """Reads that start failing after an item was found and checked (its token expired, the
    network went down): the item is recorded as failed, retried on the next run and predicted
    then, not refused as a corrupt raster until the item changes."""
    out = tmp_path / "out"
    with RangeServer(catalog) as server:
        options = {"stac": f"{server.url}/catalog.json", "bands": "red,green,blue", **STAC}
        ingest_config, predict_config = configs(pivots_run, out, **options)
        plan = plan_ingest(ingest_config, predict_config)
        assert len(plan.scenes) == 2
        server.forbid.add(f"/{S2}/")
        outcomes: dict[str, Any] = {}
        for candidate, scene in plan.scenes:
            try:
                outcomes[candidate.id] = predict_planned(scene, plan.config, progress=False)
            except Exception as exc:  # as the ingest flow's prediction tasks end
                outcomes[candidate.id] = exc
        result = finish_ingest(plan, outcomes)
        assert not result.predicted and not result.refused
        assert set(result.failed) == {AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id}
        assert result.failed[AUSTRIA_JUNE.id].startswith(
            f"RemoteReadError: {out / '.stac' / AUSTRIA_JUNE.id}.vrt: a remote read failed at row"
        )
        server.forbid.clear()
        again = ingest(pivots_run, out, **options)
    assert list(again.predicted) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]


# --- the region layer --------------------------------------------------------------------------


def cut_scene(source: Path, target: Path, cols: tuple[int, int]) -> Path:
    """Columns `cols` of a real scene as a scene of its own, on the same grid."""
    with rasterio.open(source) as src:
        window = Window(cols[0], 0, cols[1] - cols[0], src.height)
        meta = {**src.profile, "width": window.width, "transform": src.window_transform(window)}
        with rasterio.open(target, "w", **meta) as dst:
            dst.write(src.read(window=window))
    return target


def test_the_region_layer_holds_every_predicted_scene_as_one(
    pivots_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--region`: the polygons of every scene predicted into --out as one layer, the same as
    `vectorize` of their class rasters together; left as it is by a run that predicts nothing,
    rewritten when a scene arrives (one in another CRS too, resampled onto the layer's grid),
    and kept (with a warning) when a class raster cannot join the mosaic (damaged). A region
    file that cannot be one is refused up front."""
    inbox, out, region = tmp_path / "inbox", tmp_path / "out", tmp_path / "region.gpkg"
    inbox.mkdir()
    cut_scene(NEBRASKA, inbox / "west.tif", (0, 280))
    cut_scene(NEBRASKA, inbox / "east.tif", (256, 512))
    first = ingest(pivots_run, out, source=str(inbox), region=str(region))
    assert len(first.predicted) == 2 and first.region and "of 2 scene(s)" in first.region
    layer = gpd.read_file(region, layer="polygons")
    classes = [o["classes"] for o in first.predicted.values()]
    code, err = run_cli("vectorize", *classes, "--out", tmp_path / "together.gpkg")
    assert code == 0, err
    together = gpd.read_file(tmp_path / "together.gpkg", layer="polygons")
    assert len(layer) == len(together) > 0
    assert set(layer.source) <= {"west_classes.tif", "east_classes.tif"}
    apart = sum(
        len(gpd.read_file(o["polygons"], layer="polygons")) for o in first.predicted.values()
    )
    assert len(layer) < apart  # polygons across the halves' edge are one
    written = region.read_bytes()

    again = ingest(pivots_run, out, source=str(inbox), region=str(region))
    assert again.new == 0 and again.region is None and region.read_bytes() == written

    shutil.copy(NEBRASKA, inbox / "whole.tif")  # drawn over both halves: predicted last
    third = ingest(pivots_run, out, source=str(inbox), region=str(region))
    assert third.region and "of 3 scene(s)" in third.region
    assert set(gpd.read_file(region, layer="polygons").source) == {"whole_classes.tif"}

    warped = inbox / "warped.tif"  # the scene (CONUS Albers) as delivered in UTM zone 13N
    with rasterio.open(NEBRASKA) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32613", src.width, src.height, *src.bounds
        )
        meta = {**src.profile, "crs": "EPSG:32613", "transform": transform, "width": width,
                "height": height}  # fmt: skip
        with rasterio.open(warped, "w", **meta) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=Resampling.nearest)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geo.vectorize.mosaic"):
        fourth = ingest(pivots_run, out, source=str(inbox), region=str(region))
    assert list(fourth.predicted) == [str(warped)]
    assert fourth.region and "of 4 scene(s)" in fourth.region
    assert "warped_classes.tif (in EPSG:32613, not an unnamed Albers Equal Area CRS)" in (
        caplog.text
    )
    assert "resampled onto the grid of" in caplog.text
    sources = gpd.read_file(region, layer="polygons").source
    assert (sources == "warped_classes.tif").mean() > 0.9  # drawn over the others

    written = region.read_bytes()
    damaged = out / "east_classes.tif"  # a class raster damaged on disk cannot join
    damaged.write_bytes(damaged.read_bytes()[:1000])
    cut_scene(NEBRASKA, inbox / "middle.tif", (128, 384))
    with caplog.at_level(logging.WARNING, logger="geo.ingest.region"):
        fifth = ingest(pivots_run, out, source=str(inbox), region=str(region))
    assert list(fifth.predicted) == [str(inbox / "middle.tif")] and region.read_bytes() == written
    assert fifth.region and fifth.region.startswith("not rewritten: ")
    assert "east_classes.tif: corrupt or truncated raster" in fifth.region
    assert f"--region {region} not rewritten" in caplog.text
    sixth = ingest(pivots_run, out, source=str(inbox), region=str(region))  # nothing new: the
    assert sixth.new == 0 and sixth.region == fifth.region  # layer misses one: tried again

    for bad, message in ((tmp_path / "region.txt", "give a file name ending in .gpkg"),
                         (inbox, "is a folder; give a file name")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            check_ingest(*configs(pivots_run, out, source=str(inbox), region=str(bad)))


def test_two_runs_saving_one_record_keep_each_others_entries(tmp_path: Path) -> None:
    """Two ingest runs into one folder at once, each predicting the scenes the other left
    (another run was writing them): each saves what it did, and the record holds both (the
    last writer's record replaced the other's: half the scenes looked new again)."""
    path = tmp_path / RECORD_FILE
    IngestRecord("m").save(path)
    first, second = IngestRecord.load(path, "m"), IngestRecord.load(path, "m")
    first.mark_done("a.tif", "1", {"classes": "a_classes.tif"})
    first.mark_failed("c.tif", "1", "network")
    second.mark_done("b.tif", "1", {"classes": "b_classes.tif"})
    second.mark_skipped("d.tif", "1", "one band")
    first.save(path)
    second.save(path)
    stored = IngestRecord.load(path, "m")
    assert sorted(stored.done) == ["a.tif", "b.tif"]
    assert list(stored.failed) == ["c.tif"] and list(stored.skipped) == ["d.tif"]
    assert second.done == stored.done  # a saved record holds what the file does
    first.mark_done("c.tif", "1", {"classes": "c_classes.tif"})  # retried: no longer failed
    first.save(path)
    stored = IngestRecord.load(path, "m")
    assert sorted(stored.done) == ["a.tif", "b.tif", "c.tif"] and not stored.failed
