"""STAC sources: finding items, band maps, VRT stacks read over HTTP range requests, the ingest
record; against a static catalog of COGs made from the bundled scenes, served on 127.0.0.1 by a
range-capable HTTP server, and a real STAC API (`rustac serve`) over the same items."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac_client
import pytest
import rasterio
import torch
from pystac_client import ConformanceClasses
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds
from shapely.geometry import box

from geo.errors import InputError
from geo.ingest.records import IngestRecord
from geo.ingest.stac import (
    REMOTE_GDAL_ENV,
    AssetUnreadable,
    Condition,
    StacItem,
    StacSource,
    cql2_filter,
    find_items,
    parse_band_map,
    parse_duration,
    parse_query,
    parse_window,
    query_extension,
    safe_name,
    stack_item,
)
from geo.ingest.stac.signing import asset_signer, signer_name
from geo.ingest.vrt import gdal_path
from tests.support.http_range import RangeServer
from tests.support.stac_api import (
    RustacServer,
    StacFastapiStatic,
    rustac_binary,
    stac_fastapi_static_python,
)
from tests.support.stac_catalog import (
    AUSTRIA_JUNE,
    AUSTRIA_SEPTEMBER,
    LANDSAT,
    NEBRASKA_LANDSAT,
    S2,
    band_path,
    build_catalog,
    collections,
    item_collection,
)

PIVOTS = Path(__file__).resolve().parents[2] / "examples/data/nebraska_center_pivots_landsat"
PIVOTS = PIVOTS / "pivots.gpkg"
NOW = dt.datetime(2021, 10, 8, 12, 0, tzinfo=dt.UTC)
AUSTRIA_AOI = (13.13, 48.285, 13.138, 48.29)  # about 60 x 55 pixels at 10 m
ALL_IDS = [NEBRASKA_LANDSAT.id, AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]  # by datetime


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_catalog(tmp_path_factory.mktemp("stac") / "catalog").parent


@pytest.fixture()
def catalog(built: Path, tmp_path: Path) -> Path:
    """A copy of the catalog this test may change."""
    return Path(shutil.copytree(built, tmp_path / "catalog"))


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def tif_requests(server: RangeServer) -> list:
    return [r for r in server.requests() if r.path.endswith(".tif")]


# --- parsing ----------------------------------------------------------------------------------


def test_query_parsing_and_translation() -> None:
    conds = parse_query("eo:cloud_cover<20, platform = 'sentinel-2b'; s2:x>=1.5 and ok==true")
    assert conds == (
        Condition("eo:cloud_cover", "<", 20),
        Condition("platform", "=", "sentinel-2b"),
        Condition("s2:x", ">=", 1.5),
        Condition("ok", "=", True),
    )
    assert [str(c) for c in conds] == [
        "eo:cloud_cover<20", "platform=sentinel-2b", "s2:x>=1.5", "ok=true"
    ]  # fmt: skip
    assert query_extension(parse_query("eo:cloud_cover<20,eo:cloud_cover>=5")) == {
        "eo:cloud_cover": {"lt": 20, "gte": 5}
    }
    assert cql2_filter(parse_query("eo:cloud_cover<20")) == {
        "op": "<", "args": [{"property": "eo:cloud_cover"}, 20]
    }  # fmt: skip
    assert cql2_filter(parse_query("a!=1,b='x'")) == {
        "op": "and",
        "args": [
            {"op": "<>", "args": [{"property": "a"}, 1]},
            {"op": "=", "args": [{"property": "b"}, "x"]},
        ],
    }
    cc = Condition("eo:cloud_cover", "<", 20)
    assert cc.matches({"eo:cloud_cover": 4.5})
    assert not cc.matches({"eo:cloud_cover": 35})
    assert not cc.matches({})  # missing: no match
    assert not cc.matches({"eo:cloud_cover": "4"})  # text is not a number
    with pytest.raises(InputError, match="PROPERTY OP VALUE") as exc:
        parse_query("cloudy")
    one_line(exc)
    for typo, value in (("eo:cloud_cover<20%", "'20%'"), ("eo:cloud_cover<<20", "'<20'")):
        with pytest.raises(InputError) as exc:  # an order against text matched nothing, ever
            parse_query(typo)
        assert str(exc.value) == (
            f"--query '{typo}': < compares numbers or dates, not {value} (a number such as "
            "eo:cloud_cover<20, without a unit or a second operator)"
        )
    assert parse_query("datetime>2021-06-01") == (Condition("datetime", ">", "2021-06-01"),)
    with pytest.raises(InputError, match="two conditions"):
        StacSource(".", query="eo:cloud_cover<20,eo:cloud_cover<10")


def test_time_windows() -> None:
    assert parse_duration("P10D") == dt.timedelta(days=10)
    assert parse_duration("last 10 days") == parse_duration("Last 10 Days") == dt.timedelta(10)
    assert parse_duration("last day") == dt.timedelta(days=1)
    assert parse_duration("PT12H") == parse_duration("last 12 hours") == dt.timedelta(hours=12)
    assert parse_duration("P2W") == dt.timedelta(weeks=2)
    assert parse_duration("P1DT6H30M") == dt.timedelta(days=1, hours=6, minutes=30)
    assert parse_duration("P") is None and parse_duration("2021-06-01") is None
    assert parse_window("P10D", NOW) == (NOW - dt.timedelta(days=10), NOW)
    june = dt.datetime(2021, 6, 1, tzinfo=dt.UTC)
    end_of_june = dt.datetime(2021, 7, 1, tzinfo=dt.UTC) - dt.timedelta(microseconds=1)
    assert parse_window("2021-06-01/2021-06-30", NOW) == (june, end_of_june)
    assert parse_window("2021-06-01", NOW) == (june, june + dt.timedelta(1, 0, -1))
    assert parse_window("2021-06-01/..", NOW) == (june, None)
    assert parse_window("../2021-06-01T00:00:00Z", NOW) == (None, june)
    assert parse_window("2021-06-01/P10D", NOW) == (june, june + dt.timedelta(10))
    assert parse_window("P1D/2021-06-01T00:00:00+02:00", NOW) == (
        june - dt.timedelta(days=1, hours=2),
        june - dt.timedelta(hours=2),
    )
    for bad, message in [
        ("yesterday", "not an ISO date"),
        ("2021-06-30/2021-06-01", "ends before it starts"),
        ("P1D/P2D", "one end"),
        ("P1D/..", "needs a date"),
    ]:
        with pytest.raises(InputError, match=message) as exc:
            parse_window(bad, NOW)
        assert one_line(exc).startswith(f"--datetime {bad}")


def test_source_validation(tmp_path: Path) -> None:
    source = StacSource(
        "https://earth-search.aws.element84.com/v1", collections="sentinel-2-l2a",
        bbox="13.0,48.0,13.3,48.3", datetime="P10D", query="eo:cloud_cover < 20", max_items=50,
    )  # fmt: skip
    assert source.collections == ("sentinel-2-l2a",)
    assert source.bbox == (13.0, 48.0, 13.3, 48.3)
    assert source.query == ("eo:cloud_cover<20",)
    assert source.area().bounds == (13.0, 48.0, 13.3, 48.3)
    assert "datetime P10D" in source.describe()
    cases = [
        (dict(url=""), "give a STAC API URL"),
        (dict(url=str(tmp_path / "nope.json")), "no such catalog"),
        (dict(url="ftp://host/catalog.json"), "http(s) URL or a local path"),
        (dict(url="https://x.org/v1", kind="api"), "name a --collection"),
        (dict(url=".", bbox="13,48,12,49"), "west < east"),
        (dict(url=".", bbox="13,48,14"), "west,south,east,north"),
        (dict(url=".", bbox=(13, 48, 14, 49), aoi=str(PIVOTS)), "not both"),
        (dict(url=".", aoi=str(tmp_path / "aoi.gpkg")), "no such vector file"),
        (dict(url=".", datetime="soon"), "--datetime soon"),
        (dict(url=".", max_items=0), "--max-items 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=re.escape(message)) as exc:
            StacSource(**kwargs)
        one_line(exc)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="no geometries"):
        StacSource(".", aoi=str(bad)).area()


def test_band_maps() -> None:
    plain = parse_band_map("red, green,blue,nir")
    assert [(b.model_band, b.asset, b.band) for b in plain.bands] == [
        (1, "red", 1), (2, "green", 1), (3, "blue", 1), (4, "nir", 1)
    ]  # fmt: skip
    assert str(plain) == "red,green,blue,nir"
    later = parse_band_map("red,green,blue,nir", model_bands=[5, 6, 7, 8])
    assert later.model_bands == (5, 6, 7, 8)
    explicit = parse_band_map("8=nir,5=red,6=green,7=blue", model_bands=[5, 6, 7, 8])
    assert [b.asset for b in explicit.bands] == ["red", "green", "blue", "nir"]
    assert [(b.asset, b.band) for b in parse_band_map("visual:3,visual:1").bands] == [
        ("visual", 3), ("visual", 1)
    ]  # fmt: skip
    for text, bands, message in [
        ("red,green,blue", [1, 2, 3, 4], "the model reads bands \\[1, 2, 3, 4\\]"),
        ("red,,blue", None, "separated by commas"),
        ("1=red,green", None, "name every model band"),
        ("1=red,1=green", None, "named twice"),
        ("x=red", None, "not a band number"),
    ]:
        with pytest.raises(InputError, match=message) as exc:
            parse_band_map(text, bands)
        assert one_line(exc).startswith("--bands")


def test_gdal_paths() -> None:
    assert (
        gdal_path("https://a.org/x/B04.tif?sig=1&t=2")
        == "/vsicurl/https://a.org/x/B04.tif?sig=1&t=2"
    )
    assert gdal_path("s3://sentinel-cogs/tiles/B04.tif") == "/vsis3/sentinel-cogs/tiles/B04.tif"
    assert gdal_path("gs://bucket/a%20b.tif") == "/vsigs/bucket/a b.tif"
    assert gdal_path("az://container/blob.tif") == "/vsiaz/container/blob.tif"
    assert gdal_path("file:///data/b04.tif") == "/data/b04.tif"
    assert gdal_path("/data/b04.tif") == "/data/b04.tif"
    assert gdal_path("/vsizip//data/a.zip/b.tif") == "/vsizip//data/a.zip/b.tif"
    with pytest.raises(InputError, match="ftp://"):
        gdal_path("ftp://host/b04.tif")
    assert safe_name("S2B_33UUP_20210617_0_L2A") == "S2B_33UUP_20210617_0_L2A"
    assert safe_name("../a b/c") == "_a_b_c"


# --- finding items ----------------------------------------------------------------------------


def test_find_items_in_a_local_static_catalog(built: Path) -> None:
    items = find_items(StacSource(str(built)))
    assert [i.id for i in items] == ALL_IDS
    june = items[1]
    assert (june.collection, june.version) == (S2, "2021-06-18T02:00:00Z")
    assert june.datetime == "2021-06-17T10:20:00Z"
    assert items[0].version == "2020-07-15T17:30:00Z"  # no `updated`: the datetime
    assert sorted(june.assets) == ["blue", "green", "metadata", "nir", "nir08", "red"]
    red = june.assets["red"]
    assert red.href == str(built / S2 / june.id / "red.tif")  # relative href made absolute
    assert red.common_names == ("red",) and not red.categorical
    assert StacItem.from_dict(json.loads(json.dumps(june.to_dict()))) == june

    def ids(**kwargs: object) -> list[str]:
        return [i.id for i in find_items(StacSource(str(built), **kwargs), now=NOW)]

    assert ids(bbox=(13.0, 48.0, 13.3, 48.4)) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    assert ids(bbox=(13.0, 48.0, 13.1, 48.2)) == []  # near, but outside the footprints
    assert ids(collections=LANDSAT) == [NEBRASKA_LANDSAT.id]
    assert ids(datetime="2021-06-01/2021-06-30") == [AUSTRIA_JUNE.id]
    assert ids(datetime="P30D") == [AUSTRIA_SEPTEMBER.id]  # 2021-09-08 .. 2021-10-08
    assert ids(datetime="last 2 days") == []
    assert ids(query="eo:cloud_cover<20") == [NEBRASKA_LANDSAT.id, AUSTRIA_JUNE.id]
    assert ids(query="eo:cloud_cover<20", collections=S2) == [AUSTRIA_JUNE.id]
    assert ids(query="platform=s2b") == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]
    assert ids(max_items=2) == [AUSTRIA_JUNE.id, AUSTRIA_SEPTEMBER.id]  # the newest
    assert ids(aoi=str(PIVOTS)) == [NEBRASKA_LANDSAT.id]  # a GeoPackage in a custom Albers CRS
    collection = built / S2 / "collection.json"
    assert [i.id for i in find_items(StacSource(str(collection)))] == ALL_IDS[1:]


def test_filters_of_a_static_catalog_that_can_match_nothing_are_said(
    built: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A collection the catalog does not hold is refused with those it holds, and a queried
    property no item carries (a misspelt name) is warned about: a scheduled ingest would
    otherwise find nothing, run after run, without a word."""
    with pytest.raises(InputError) as exc:
        find_items(StacSource(str(built), collections="sentinel-3"))
    assert str(exc.value) == (
        f"--collection sentinel-3: {built} holds no such collection (its collections: "
        f"{', '.join(sorted({LANDSAT, S2}))})"
    )
    with caplog.at_level(logging.WARNING, logger="geo"):
        assert find_items(StacSource(str(built), query="eo:cloudcover<20")) == []
    assert (
        f"--query eo:cloudcover<20: no item of {built} has the property 'eo:cloudcover' "
        "(misspelt?), so none matches" in caplog.text
    )


def test_find_items_over_http(built: Path) -> None:
    with RangeServer(built) as server:
        url = f"{server.url}/catalog.json"
        items = find_items(StacSource(url, collections=S2, datetime="2021-09-01/.."))
        assert [i.id for i in items] == [AUSTRIA_SEPTEMBER.id]
        item = items[0]
        assert item.href == f"{server.url}/{S2}/{item.id}/{item.id}.json"
        assert item.assets["nir"].href == f"{server.url}/{S2}/{item.id}/nir.tif"
        assert item.assets["nir"].path == f"/vsicurl/{server.url}/{S2}/{item.id}/nir.tif"
        # the landsat collection's items are not even read
        assert not any(LANDSAT in r.path and r.path.endswith(".json") and "collection" not in
                       r.path for r in server.requests())  # fmt: skip


def test_a_non_stac_or_missing_url_is_an_input_error(catalog: Path) -> None:
    (catalog / "other.json").write_text('{"type": "Topology"}')
    with RangeServer(catalog) as server:
        with pytest.raises(InputError, match="not STAC JSON") as exc:
            find_items(StacSource(f"{server.url}/{S2}/{AUSTRIA_JUNE.id}/metadata.xml"))
        one_line(exc)
        with pytest.raises(InputError, match="not a STAC catalog, collection or item") as exc:
            find_items(StacSource(f"{server.url}/other.json"))
        one_line(exc)
        with pytest.raises(InputError, match="HTTP 404") as exc:
            find_items(StacSource(f"{server.url}/missing.json"))
        one_line(exc)
        server.fail.add("/catalog.json")  # a server error is not the user's: an OSError, retried
        with pytest.raises(ConnectionError, match=r"/catalog.json: unavailable \(.*503") as exc:
            find_items(StacSource(f"{server.url}/catalog.json"))
        one_line(exc)


# --- band maps against items ------------------------------------------------------------------


def test_band_map_errors_name_the_asset_and_list_the_item_s_assets(built: Path) -> None:
    june = find_items(StacSource(str(built), collections=S2))[0]
    with pytest.raises(InputError) as exc:
        parse_band_map("red,green,blue,nir09").resolve(june)
    assert one_line(exc) == (
        f"--bands red,green,blue,nir09: item {june.id} has no asset 'nir09'; its assets: "
        "blue, green, metadata, nir, nir08, red"
    )
    landsat = find_items(StacSource(str(built), collections=LANDSAT))[0]
    resolved = parse_band_map("red,green,blue").resolve(landsat)  # eo:bands common names
    assert [(a.key, b) for _, a, b in resolved] == [("B1", 1), ("B2", 1), ("B3", 1)]


# --- stacking ---------------------------------------------------------------------------------


def local_twin(server: RangeServer, root: Path, path: str) -> Path:
    """The local file a /vsicurl/ source path of `server` serves."""
    prefix = f"/vsicurl/{server.url}/"
    assert path.startswith(prefix)
    return root / path[len(prefix) :]


def test_vrt_over_http_equals_the_local_bands(built: Path, tmp_path: Path) -> None:
    with RangeServer(built) as server:
        item = find_items(StacSource(f"{server.url}/catalog.json", collections=S2))[0]
        assert item.id == AUSTRIA_JUNE.id
        server.clear()
        vrt = stack_item(item, parse_band_map("red,green,blue,nir08"), AUSTRIA_AOI, tmp_path)
        assert vrt == tmp_path / f"{item.id}.vrt"
        probes = tif_requests(server)
        assert probes and all(r.status in (200, 206) and r.sent <= 16384 for r in probes)
        server.clear()
        with rasterio.Env(**REMOTE_GDAL_ENV), rasterio.open(vrt) as src:
            assert src.count == 4 and src.descriptions == ("red", "green", "blue", "nir08")
            assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)
            assert src.tags()["STAC_ITEM_ID"] == item.id
            whole = src.read()
            tiles = {w: src.read(window=w) for w in (Window(0, 0, 32, 32), Window(17, 9, 40, 33))}
            bounds, transform, shape = src.bounds, src.transform, (src.height, src.width)
        # only the area of interest: a window of about 60 x 55 of the 256 x 256 pixels
        assert 50 <= shape[0] <= 70 and 50 <= shape[1] <= 70
        with rasterio.open(band_path(built, AUSTRIA_JUNE, "red")) as ref:
            native = [ref.transform @ (c, r) for c, r in ((0, 0), (1, 1))]
            col, row = ~ref.transform @ (transform.c, transform.f)
            assert col == int(col) and row == int(row)  # on the 10 m grid, not shifted
            assert native[1][0] - native[0][0] == 10
            aoi = box(*AUSTRIA_AOI)
            assert aoi.area > 0
        # same-resolution bands: exactly the local pixels
        for i, key in enumerate(["red", "green", "blue"]):
            with rasterio.open(band_path(built, AUSTRIA_JUNE, key)) as ref:
                window = from_bounds(*bounds, transform=ref.transform)
                np.testing.assert_array_equal(whole[i], ref.read(1, window=window))
                for w, data in tiles.items():
                    sub = Window(window.col_off + w.col_off, window.row_off + w.row_off,
                                 w.width, w.height)  # fmt: skip
                    np.testing.assert_array_equal(data[i], ref.read(1, window=sub))
        # the 20 m band: rasterio's own bilinear resampling of the local file, window by window
        with rasterio.open(band_path(built, AUSTRIA_JUNE, "nir08")) as ref:
            assert ref.res == (20.0, 20.0)
            window = from_bounds(*bounds, transform=ref.transform)
            expect = ref.read(1, window=window, out_shape=shape, resampling=Resampling.bilinear)
            np.testing.assert_array_equal(whole[3], expect)
            for w, data in tiles.items():
                sub = Window(window.col_off + w.col_off / 2, window.row_off + w.row_off / 2,
                             w.width / 2, w.height / 2)  # fmt: skip
                expect = ref.read(1, window=sub, out_shape=(int(w.height), int(w.width)),
                                  resampling=Resampling.bilinear)  # fmt: skip
                np.testing.assert_array_equal(data[3], expect)
        # range requests only: no whole asset was sent, in one answer or in parts (the 28 KB
        # nir08 COG is the exception in parts: GDAL's first 16 KB read is half of it, and the
        # window's tiles are the rest; the Landsat test below checks larger assets)
        reads = tif_requests(server)
        assert reads and all(r.status == 206 for r in reads if r.method == "GET")
        for key in ("red", "green", "blue"):
            path = f"/{S2}/{item.id}/{key}.tif"
            sent = sum(r.sent for r in reads if r.path == path)
            size = band_path(built, AUSTRIA_JUNE, key).stat().st_size
            assert 0 < sent < 0.8 * size, (key, sent, size)


def test_aoi_file_in_a_custom_crs_and_nodata(built: Path, tmp_path: Path) -> None:
    """The Landsat item (int16, nodata -9999, Albers without EPSG code) cut to the bounds of the
    pivot polygons: a real AOI file in the scene's own custom CRS, reprojected both ways."""
    with RangeServer(built) as server:
        source = StacSource(f"{server.url}/catalog.json", aoi=str(PIVOTS))
        (item,) = find_items(source)
        server.clear()
        vrt = stack_item(item, parse_band_map("red,green,blue"), source.area(), tmp_path)
        with rasterio.Env(**REMOTE_GDAL_ENV), rasterio.open(vrt) as src:
            data = src.read()
            assert src.nodatavals == (-9999.0,) * 3 and src.dtypes[0] == "int16"
            bounds = src.bounds
        with rasterio.open(band_path(built, NEBRASKA_LANDSAT, "B1")) as ref:
            # the window covers the pivots within the scene, with less than two pixels (a
            # round trip through lon/lat) to spare
            pivots = box(*gpd.read_file(PIVOTS).total_bounds).intersection(box(*ref.bounds))
            left, bottom, right, top = pivots.bounds
            assert bounds.left <= left and bounds.bottom <= bottom
            assert bounds.right >= right and bounds.top >= top
            assert left - bounds.left < 60 and bounds.top - top < 60
            window = from_bounds(*bounds, transform=ref.transform)
            np.testing.assert_array_equal(data[0], ref.read(1, window=window))
            assert data.shape[1] * data.shape[2] < 0.5 * ref.width * ref.height
        for r in tif_requests(server):
            assert r.method == "HEAD" or r.status == 206
        for key in ("B1", "B2", "B3"):
            sent = sum(r.sent for r in tif_requests(server) if r.path.endswith(f"/{key}.tif"))
            assert 0 < sent < 0.6 * band_path(built, NEBRASKA_LANDSAT, key).stat().st_size


def test_model_bands_keep_their_numbers(built: Path, tmp_path: Path) -> None:
    """A model trained on bands 5..8 of a stack reads bands 5..8 of the VRT; 1..4 stay empty."""
    item = find_items(StacSource(str(built), collections=S2))[0]
    band_map = parse_band_map("red,green,blue,nir", model_bands=[5, 6, 7, 8])
    vrt = stack_item(item, band_map, AUSTRIA_AOI, tmp_path)
    with rasterio.open(vrt) as src:
        assert src.count == 8
        assert src.descriptions[4:] == ("red", "green", "blue", "nir")
        assert not src.read(1).any()
        with rasterio.open(band_path(built, AUSTRIA_JUNE, "nir")) as ref:
            window = from_bounds(*src.bounds, transform=ref.transform)
            np.testing.assert_array_equal(src.read(8), ref.read(1, window=window))


def test_stack_errors(catalog: Path, tmp_path: Path) -> None:
    item = find_items(StacSource(str(catalog), collections=S2))[0]
    with pytest.raises(InputError, match="does not overlap") as exc:
        stack_item(item, parse_band_map("red"), (10.0, 40.0, 10.1, 40.1), tmp_path)
    one_line(exc)
    with pytest.raises(InputError, match="asset 'red' has 1 band"):
        stack_item(item, parse_band_map("red:2"), None, tmp_path)
    band_path(catalog, AUSTRIA_JUNE, "nir").unlink()
    with pytest.raises(AssetUnreadable, match=f"item {item.id}: asset 'nir'") as exc:
        stack_item(item, parse_band_map("red,nir"), None, tmp_path)
    one_line(exc)
    assert not list(tmp_path.glob("*.vrt"))


# --- the ingest record (runs: tests/geo/test_ingest.py) -----------------------------------


def test_record_data_structure(tmp_path: Path) -> None:
    record = IngestRecord("m1")
    items = [("a", "v1"), ("b", "v1"), ("c", "v1")]
    assert record.due(items, key=lambda i: i) == items
    record.mark_done("a", "v1", {"classes": "a_classes.tif"}, at="2024-01-01T00:00:00Z")
    record.mark_failed("b", "v1", "HTTP\n503", at="2024-01-01T00:00:00Z")
    record.mark_failed("b", "v1", "HTTP 503")
    assert record.failed["b"]["attempts"] == 2 and record.failed["b"]["reason"] == "HTTP 503"
    record.mark_failed("b", "v2", "HTTP 404")  # a new version starts counting again
    assert record.failed["b"]["attempts"] == 1
    assert record.due(items, key=lambda i: i) == [("b", "v1"), ("c", "v1")]
    assert record.due([("a", "v2")], key=lambda i: i) == [("a", "v2")]  # a new version
    assert record.due([("b", "v2")], key=lambda i: i, max_attempts=1) == []
    record.mark_skipped("c", "v1", "band 2 out of range", settings="bands=red,green")
    assert record.due(items, key=lambda i: i, settings="bands=red,green") == [("b", "v1")]
    assert ("c", "v1") in record.due(items, key=lambda i: i, settings="bands=red,blue")
    assert record.due([("c", "v2")], key=lambda i: i, settings="bands=red,green") == [("c", "v2")]
    path = tmp_path / "record.json"
    record.save(path)
    IngestRecord("m2", done={"z": {"version": "1"}}).save(path)
    again = IngestRecord.load(path, "m1")
    assert again == record
    assert IngestRecord.load(path, "m2").done == {"z": {"version": "1"}}
    assert IngestRecord.load(tmp_path / "none.json", "m1") == IngestRecord("m1")
    assert not list(tmp_path.glob("*.tmp*"))
    path.write_text("{}")
    with pytest.raises(InputError, match="not a convlora-geo ingest record; move it away"):
        IngestRecord.load(path, "m1")


# --- a real STAC API --------------------------------------------------------------------------


@pytest.mark.skipif(rustac_binary() is None, reason="rustac (the STAC API server) not installed")
def test_search_through_a_stac_api(built: Path, tmp_path: Path) -> None:
    with RangeServer(built) as files:
        loads = []
        for data in collections(built):
            loads.append(tmp_path / f"{data['id']}.json")
            loads[-1].write_text(json.dumps(data))
        loads.append(item_collection(built, files.url, tmp_path / "items.json"))
        with RustacServer(loads, tmp_path / "rustac.log") as api:

            def ids(**kwargs: object) -> list[str]:
                source = StacSource(api.url, **kwargs)
                return [i.id for i in find_items(source, now=NOW)]

            assert ids(collections=[S2, LANDSAT]) == ALL_IDS
            assert ids(collections=S2, bbox=(13.0, 48.0, 13.3, 48.4)) == ALL_IDS[1:]
            assert ids(collections=[S2, LANDSAT], aoi=str(PIVOTS)) == [NEBRASKA_LANDSAT.id]
            assert ids(collections=S2, datetime="2021-06-01/2021-06-30") == [AUSTRIA_JUNE.id]
            assert ids(collections=S2, datetime="P30D") == [AUSTRIA_SEPTEMBER.id]
            # rustac's memory backend has no query/filter extension: checked here instead
            assert ids(collections=S2, query="eo:cloud_cover<20") == [AUSTRIA_JUNE.id]
            assert ids(collections=[S2, LANDSAT], max_items=1) == [AUSTRIA_SEPTEMBER.id]
            signer = asset_signer("planetary-computer", api.url)  # as pystac-client calls it
            signed = find_items(StacSource(api.url, collections=[S2, LANDSAT]), modifier=signer)
            assert [i.id for i in signed] == ALL_IDS  # assets not in Azure stay as they are
            (item,) = find_items(StacSource(api.url, collections=S2, datetime="2021-06-17"))
            assert item.href.startswith(api.url)
            assert item.version == "2021-06-18T02:00:00Z"
            vrt = stack_item(item, parse_band_map("red,green,blue,nir08"), AUSTRIA_AOI, tmp_path)
        static = find_items(StacSource(f"{files.url}/catalog.json", datetime="2021-06-17"))[0]
        twin = stack_item(static, parse_band_map("red,green,blue,nir08"), AUSTRIA_AOI,
                          tmp_path / "static")  # fmt: skip
        with rasterio.Env(**REMOTE_GDAL_ENV), rasterio.open(vrt) as a, rasterio.open(twin) as b:
            assert a.transform == b.transform
            np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.skipif(
    stac_fastapi_static_python() is None,
    reason="stac-fastapi-static needs its own environment (STAC_FASTAPI_STATIC_PYTHON; see "
    "tests/support/stac_api.py)",
)
def test_search_through_a_stac_api_with_the_filter_extension(built: Path, tmp_path: Path) -> None:
    """stac-fastapi-static conforms to the filter extension: the query goes to it as CQL2-JSON."""
    with (
        RangeServer(built) as files,
        StacFastapiStatic(f"{files.url}/catalog.json", tmp_path / "api.log") as api,
    ):
        client = pystac_client.Client.open(api.url)
        assert client.conforms_to(ConformanceClasses.FILTER)
        found = client.search(
            collections=[S2], filter=cql2_filter(parse_query("eo:cloud_cover<20")),
            filter_lang="cql2-json",
        )  # fmt: skip
        assert [i.id for i in found.items()] == [AUSTRIA_JUNE.id]  # the server filtered

        def ids(**kwargs: object) -> list[str]:
            return [i.id for i in find_items(StacSource(api.url, **kwargs), now=NOW)]

        assert ids(collections=[S2, LANDSAT]) == ALL_IDS
        assert ids(collections=S2, bbox=(13.0, 48.0, 13.3, 48.4)) == ALL_IDS[1:]
        assert ids(collections=S2, datetime="2021-06-01/2021-06-30") == [AUSTRIA_JUNE.id]
        assert ids(collections=[S2, LANDSAT], query="eo:cloud_cover<20") == [
            NEBRASKA_LANDSAT.id, AUSTRIA_JUNE.id
        ]  # fmt: skip
        (item,) = find_items(StacSource(api.url, collections=S2, query="eo:cloud_cover>20"))
        vrt = stack_item(item, parse_band_map("red,green,blue,nir08"), AUSTRIA_AOI, tmp_path)
        red = band_path(built, AUSTRIA_SEPTEMBER, "red")
        with (
            rasterio.Env(**REMOTE_GDAL_ENV),
            rasterio.open(vrt) as src,
            rasterio.open(red) as ref,
        ):
            assert src.tags()["STAC_ITEM_ID"] == AUSTRIA_SEPTEMBER.id
            window = from_bounds(*src.bounds, transform=ref.transform)
            np.testing.assert_array_equal(src.read(1), ref.read(1, window=window))


# --- predicting a stack -----------------------------------------------------------------------


class PixelModel(torch.nn.Module):
    """A fixed 3 x 3 convolution and a softmax: a small real model for `predict_scene`."""

    def __init__(self, bands: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(bands, 3, 3, padding=1)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(4 * self.conv(images), dim=1)


def test_predicting_the_vrt_equals_predicting_a_local_stack(built: Path, tmp_path: Path) -> None:
    """The prediction of an item's VRT over HTTP equals that of a local GeoTIFF of the same bands
    (the 20 m band brought to 10 m by rasterio's bilinear read of the local COG)."""
    from geo.contracts.adapter import AdapterMetadata
    from tests.support.predict import predict_image
    from tests.support.tiny_sam import tiny_config

    keys = ["red", "green", "blue", "nir08"]
    names = [("other", "#000000"), ("field", "#33a02c"), ("water", "#1f78b4")]
    classes = [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(names)]
    document = {
        "classes": classes, "bands": [1, 2, 3, 4], "tile_size": 32,
        "normalization": {"mean": [500.0, 700.0, 450.0, 2500.0], "std": [300.0] * 3 + [900.0]},
        "config": tiny_config(image_size=32, num_classes=3, in_channels=4).to_dict(),
    }  # fmt: skip
    metadata = AdapterMetadata.from_document(document, tmp_path / "adapter.json")
    with RangeServer(built) as server:
        source = StacSource(f"{server.url}/catalog.json", collections=S2, bbox=AUSTRIA_AOI)
        item = find_items(source)[0]
        vrt = stack_item(item, parse_band_map(",".join(keys)), source.area(), tmp_path / "stacks")
        with rasterio.open(vrt) as src:
            profile = {**src.profile, "driver": "GTiff", "count": 4, "tiled": False}
            profile.pop("blockxsize"), profile.pop("blockysize")
            bounds, shape = src.bounds, (src.height, src.width)
        local = tmp_path / "local" / f"{item.id}.tif"
        local.parent.mkdir()
        with rasterio.open(local, "w", **profile) as dst:
            for i, key in enumerate(keys, start=1):
                with rasterio.open(band_path(built, AUSTRIA_JUNE, key)) as ref:
                    window = from_bounds(*bounds, transform=ref.transform)
                    dst.write(ref.read(1, window=window, out_shape=shape,
                                       resampling=Resampling.bilinear), i)  # fmt: skip
        remote = predict_image(vrt, PixelModel(4), metadata, tmp_path / "out_vrt")
    here = predict_image(local, PixelModel(4), metadata, tmp_path / "out_local")
    assert remote["classes"].name == f"{item.id}_classes.tif"  # named by item id
    for name in ("classes", "probability"):
        with rasterio.open(remote[name]) as a, rasterio.open(here[name]) as b:
            assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
            np.testing.assert_array_equal(a.read(), b.read())
            assert len(np.unique(a.read(1))) > 1  # not a constant map


def test_planetary_computer_s_api_is_signed_unless_told() -> None:
    pc = "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert signer_name(None, pc) == "planetary-computer"
    assert signer_name(None, "https://earth-search.aws.element84.com/v1") == "none"
    assert signer_name(None, "catalog/catalog.json") == "none"
    assert signer_name("none", pc) == "none"
    assert signer_name("planetary-computer", "http://127.0.0.1:8080/") == "planetary-computer"
    assert asset_signer(None, "https://earth-search.aws.element84.com/v1") is None
    assert callable(asset_signer(None, pc))
