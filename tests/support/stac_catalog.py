"""A small static STAC catalog made from the bundled scenes: one Cloud-Optimised GeoTIFF per band.

Layout (pystac's default, self-contained, relative hrefs everywhere, as static catalogs publish):

    root/catalog.json
    root/<collection>/collection.json
    root/<collection>/<item id>/<item id>.json   + one COG per band asset, + metadata.xml

The Sentinel-2 items come from the Austria two-date stack (B04, B03, B02, B08 of each date) with
the asset keys Earth Search uses (`red`, `green`, `blue`, `nir`) at 10 m, plus `nir08` at 20 m
(B08 averaged over 2 x 2 pixels: a coarser band as B8A is). The Landsat item comes from the
Nebraska scene (int16, nodata -9999, a custom Albers CRS without an EPSG code) with keys `B1`..`B3`
whose only link to red/green/blue is their `eo:bands` common names.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pystac
import rasterio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
AUSTRIA = EXAMPLES / "ftw_austria_sentinel2" / "austria_s2_2021_winA_winB.tif"
NEBRASKA = EXAMPLES / "nebraska_center_pivots_landsat" / "nebraska_landsat_albers_30m.tif"
COG = {"driver": "COG", "compress": "deflate", "blocksize": 64, "overviews": "none"}
COG_TYPE = str(pystac.MediaType.COG)


@dataclass(frozen=True)
class Band:
    key: str
    source_band: int  # 1-based band of the source scene
    common_name: str | None = None
    factor: int = 1  # > 1: written `factor` times coarser (mean of factor x factor pixels)


@dataclass(frozen=True)
class Scene:
    """One item to make: which bands of which bundled scene, with what metadata."""

    id: str
    collection: str
    source: Path
    datetime: str
    bands: tuple[Band, ...]
    properties: dict[str, object] = field(default_factory=dict)


def s2_bands(offset: int) -> tuple[Band, ...]:
    """The Austria stack's bands of one date (offset 0: date A, 4: date B)."""
    return (
        Band("red", 1 + offset, "red"),
        Band("green", 2 + offset, "green"),
        Band("blue", 3 + offset, "blue"),
        Band("nir", 4 + offset, "nir"),
        Band("nir08", 4 + offset, "nir08", factor=2),
    )


S2 = "sentinel-2-l2a-demo"
LANDSAT = "landsat-demo"
AUSTRIA_JUNE = Scene(
    "S2B_33UUP_20210617_0_L2A", S2, AUSTRIA, "2021-06-17T10:20:00Z", s2_bands(0),
    {"eo:cloud_cover": 4.5, "updated": "2021-06-18T02:00:00Z"},
)  # fmt: skip
AUSTRIA_SEPTEMBER = Scene(
    "S2B_33UUP_20210925_0_L2A", S2, AUSTRIA, "2021-09-25T10:20:00Z", s2_bands(4),
    {"eo:cloud_cover": 35.0, "updated": "2021-09-26T02:00:00Z"},
)  # fmt: skip
AUSTRIA_OCTOBER = Scene(  # the item "published later": same pixels as June, another date
    "S2A_33UUP_20211005_0_L2A", S2, AUSTRIA, "2021-10-05T10:20:00Z", s2_bands(0),
    {"eo:cloud_cover": 12.0, "updated": "2021-10-06T02:00:00Z"},
)  # fmt: skip
NEBRASKA_LANDSAT = Scene(
    "LC08_L2SP_033031_20200715_02_T1", LANDSAT, NEBRASKA, "2020-07-15T17:30:00Z",
    (Band("B1", 1, "red"), Band("B2", 2, "green"), Band("B3", 3, "blue")),
    {"eo:cloud_cover": 1.0},  # no `updated`: the version is the datetime
)  # fmt: skip
SCENES = (AUSTRIA_JUNE, AUSTRIA_SEPTEMBER, NEBRASKA_LANDSAT)


def write_band(source: Path, band: int, target: Path, factor: int = 1) -> None:
    """One band of `source` as a COG (64 px tiles); `factor` > 1 averages factor x factor pixels."""
    with rasterio.open(source) as src:
        profile = {
            **COG, "dtype": src.dtypes[band - 1], "count": 1, "crs": src.crs,
            "nodata": src.nodata, "width": src.width // factor, "height": src.height // factor,
            "transform": src.transform @ src.transform.scale(factor),
        }  # fmt: skip
        data = src.read(band)
    if factor > 1:
        h, w = profile["height"], profile["width"]
        blocks = data[: h * factor, : w * factor].astype("float64")
        data = blocks.reshape(h, factor, w, factor).mean(axis=(1, 3)).round().astype(data.dtype)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data, 1)


def make_item(scene: Scene, folder: Path) -> pystac.Item:
    """Write the scene's band COGs into `folder` and return its item (absolute asset hrefs)."""
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, pystac.Asset] = {}
    for band in scene.bands:
        path = folder / f"{band.key}.tif"
        write_band(scene.source, band.source_band, path, band.factor)
        with rasterio.open(path) as src:
            gsd = abs(src.transform.a)
            extra: dict[str, object] = {"gsd": gsd, "proj:shape": [src.height, src.width]}
        if band.common_name:
            extra["eo:bands"] = [{"name": band.key, "common_name": band.common_name}]
        assets[band.key] = pystac.Asset(
            str(path), media_type=COG_TYPE, roles=["data"], extra_fields=extra
        )
    (folder / "metadata.xml").write_text(f"<granule id='{scene.id}'/>\n")
    assets["metadata"] = pystac.Asset(
        str(folder / "metadata.xml"), media_type="application/xml", roles=["metadata"]
    )
    geometry, bbox = footprint(scene.source)
    props = {"platform": scene.id[:3].lower(), **scene.properties}
    return pystac.Item(
        scene.id, geometry, bbox, _parse(scene.datetime), props, assets=assets,
        collection=scene.collection,
        stac_extensions=["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
    )  # fmt: skip


def footprint(path: Path) -> tuple[dict, list[float]]:
    """The raster's outline in lon/lat (densified edges), as a GeoJSON polygon and its bbox."""
    from rasterio.warp import transform

    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    n = 16
    xs = [left + (right - left) * i / n for i in range(n)]
    ys = [top - (top - bottom) * i / n for i in range(n)]
    ring_x = xs + [right] * n + [right - x + left for x in xs] + [left] * n
    ring_y = [top] * n + ys + [bottom] * n + [bottom - y + top for y in ys]
    lons, lats = transform(crs, "EPSG:4326", ring_x, ring_y)
    coords = [[round(x, 7), round(y, 7)] for x, y in zip(lons, lats, strict=True)]
    coords.append(coords[0])
    bbox = [min(lons), min(lats), max(lons), max(lats)]
    return {"type": "Polygon", "coordinates": [coords]}, [round(v, 7) for v in bbox]


def build_catalog(root: Path, scenes: tuple[Scene, ...] = SCENES) -> Path:
    """Write a self-contained static catalog of `scenes` under `root`; return catalog.json."""
    catalog = pystac.Catalog("demo", "convlora-geo test catalog made from the bundled scenes")
    for scene in scenes:
        _collection(catalog, scene.collection).add_item(
            make_item(scene, root / scene.collection / scene.id)
        )
    return _save(catalog, root)


def add_items(root: Path, scenes: tuple[Scene, ...]) -> None:
    """Publish more items into the catalog at `root` (as a provider adds new acquisitions)."""
    catalog = pystac.Catalog.from_file(str(root / "catalog.json"))
    for scene in scenes:
        _collection(catalog, scene.collection).add_item(
            make_item(scene, root / scene.collection / scene.id)
        )
    _save(catalog, root)


def touch_item(root: Path, scene: Scene, updated: str) -> None:
    """Re-publish an item with a new `updated` time (a reprocessed scene)."""
    path = root / scene.collection / scene.id / f"{scene.id}.json"
    data = json.loads(path.read_text())
    data["properties"]["updated"] = updated
    path.write_text(json.dumps(data, indent=2))


def item_collection(root: Path, base_url: str, target: Path) -> Path:
    """All items of the static catalog at `root` as one GeoJSON FeatureCollection whose asset
    hrefs are absolute URLs under `base_url` (what a STAC API serves), for loading into an API."""
    catalog = pystac.Catalog.from_file(str(root / "catalog.json"))
    features = []
    for item in sorted(catalog.get_items(recursive=True), key=lambda i: i.id):
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        folder = Path(item.get_self_href()).parent.relative_to(root)
        for asset in data["assets"].values():
            name = Path(asset["href"]).name
            asset["href"] = f"{base_url}/{folder.as_posix()}/{name}"
        data["links"] = []
        features.append(data)
    target.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return target


def collections(root: Path) -> list[dict]:
    """The catalog's collections as dicts without links (for loading into an API)."""
    catalog = pystac.Catalog.from_file(str(root / "catalog.json"))
    out = []
    for collection in catalog.get_children():
        data = collection.to_dict(include_self_link=False, transform_hrefs=False)
        data["links"] = []
        out.append(data)
    return out


def band_path(root: Path, scene: Scene, key: str) -> Path:
    return root / scene.collection / scene.id / f"{key}.tif"


def _collection(catalog: pystac.Catalog, name: str) -> pystac.Collection:
    found = catalog.get_child(name)
    if found is not None:
        assert isinstance(found, pystac.Collection)
        return found
    extent = pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[dt.datetime(2015, 1, 1, tzinfo=dt.UTC), None]]),
    )
    collection = pystac.Collection(name, f"{name} (test items)", extent, license="other")
    catalog.add_child(collection)
    return collection


def _save(catalog: pystac.Catalog, root: Path) -> Path:
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)
