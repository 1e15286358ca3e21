"""Stacking an item's bands over the area of interest as a VRT of remote COGs (`stack_item`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geo.errors import InputError
from geo.ingest.stac.bands import BandMap
from geo.ingest.stac.clouds import CloudMask
from geo.ingest.stac.items import StacAsset, StacItem
from geo.ingest.stac.signing import PLANETARY_COMPUTER
from geo.io.sas import without_token
from geo.io.storage import UNCACHED_REMOTE_ENV
from geo.io.vrt import GDAL_TYPES, Band, Source, write_vrt

# Probing a header: no directory listing, and no use of GDAL's cache of remote files (a file that
# failed earlier in this process is asked for again). Tokens are prefixes, split at ':'.
_PROBE_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", **UNCACHED_REMOTE_ENV}


class AssetUnreadable(OSError):
    """An asset could not be opened (network, permissions, not a raster): one line naming it."""


@dataclass(frozen=True)
class _Raster:
    path: str
    crs: CRS | None
    transform: Affine
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    block: tuple[int, int]


def _probe(asset: StacAsset, item_id: str) -> _Raster:
    """Read an asset's header (one or two range requests). GDAL's per-process cache of remote
    files is bypassed here, so a retry in the same process sees the asset as it is now."""
    path = asset.path
    try:
        with rasterio.Env(**_PROBE_ENV), rasterio.open(path) as src:
            rows, cols = src.block_shapes[0]
            return _Raster(
                path, src.crs, src.transform, src.width, src.height, src.count,
                tuple(src.dtypes), src.nodata, (cols, rows),
            )  # fmt: skip
    except RasterioIOError as exc:
        detail = str(exc).replace(path, "").strip(" :,") or type(exc).__name__
        raise AssetUnreadable(
            f"item {item_id}: asset {asset.key!r} ({asset.href}) could not be read: {detail}"
            + _unsigned_hint(asset.href, detail)
        ) from exc


def _unsigned_hint(href: str, detail: str) -> str:
    """What to do about a refused read of an unsigned URL in Azure Blob Storage."""
    url = urlsplit(href)
    unsigned = "sig=" not in url.query and (url.hostname or "").endswith(".blob.core.windows.net")
    refused = any(code in detail for code in ("HTTP response code: 403", "HTTP response code: 409"))
    if not (unsigned and refused):
        return ""
    return (
        f" (unsigned, in Azure Blob Storage: --sign {PLANETARY_COMPUTER} signs "
        "Planetary Computer's)"
    )


def stack_item(
    item: StacItem,
    band_map: BandMap,
    aoi: BaseGeometry | Sequence[float] | None,
    out_dir: str | Path,
    *,
    resampling: str = "bilinear",
    cloud_mask: CloudMask | None = None,
) -> Path:
    """Write OUT_DIR/ITEM_ID.vrt stacking the mapped assets over the area of interest.

    Band b of the VRT is the model's band b (the adapter metadata's `bands` apply unchanged;
    bands the model does not read are left empty and cost nothing). The grid is that of the
    finest mapped asset, cut to the window covering `aoi` (lon/lat geometry or bbox; None: the
    whole asset); coarser assets are resampled to it with `resampling` (bilinear: continuous
    values), or nearest for categorical ones (class or mask assets). All mapped assets must share
    one CRS; the AOI is reprojected into it. `cloud_mask` (an asset of a known kind, its values
    mapped to GDAL's mask values by the kind's lookup table) becomes the mask of every band: its
    no data pixels (clouds, say) are no data in the scene. Only each asset's header is read here.

    Raises InputError for a band map that does not fit the item, an AOI outside it, or assets in
    different CRSs; AssetUnreadable when an asset cannot be opened (a later try may succeed).
    """
    resolved = band_map.resolve(item)
    rasters: dict[str, _Raster] = {}
    for _, asset, _ in resolved:
        if asset.key not in rasters:
            rasters[asset.key] = _probe(asset, item.id)
    for _, asset, band in resolved:
        raster = rasters[asset.key]
        if band > raster.count:
            raise InputError(
                f"--bands {band_map}: item {item.id}: asset {asset.key!r} has {raster.count} "
                f"band(s), not {band}"
            )
        if raster.transform.b or raster.transform.d:
            raise InputError(f"item {item.id}: asset {asset.key!r} is rotated; cannot stack it")
    crses = {k: r.crs for k, r in rasters.items()}
    first_key, crs = next(iter(crses.items()))
    if crs is None:
        raise InputError(f"item {item.id}: asset {first_key!r} has no CRS")
    for key, other in crses.items():
        if other != crs:
            raise InputError(
                f"item {item.id}: assets {first_key!r} and {key!r} are in different CRSs "
                f"({crs.to_string()} and {other.to_string() if other else 'none'})"
            )
    # the finest grid among the mapped assets (smallest pixel area; the first of equals)
    fine = min(rasters.values(), key=lambda r: abs(r.transform.a * r.transform.e))
    col0, row0, width, height = _aoi_window(fine, aoi, crs, item.id)
    t = fine.transform
    x0, y0 = t.c + col0 * t.a, t.f + row0 * t.e
    dtype = np.result_type(
        *(rasters[a.key].dtypes[b - 1] for _, a, b in resolved)
    ).name  # a common type for all bands
    if dtype not in GDAL_TYPES:
        dtype = "float64"
    by_model = {spec.model_band: (spec, asset, band) for spec, asset, band in resolved}
    bands = []
    for number in range(1, max(by_model) + 1):
        if number not in by_model:
            bands.append(Band(f"unused (model band {number} is not read)", dtype))
            continue
        spec, asset, band = by_model[number]
        r = rasters[asset.key]
        method = "nearest" if asset.categorical else resampling
        source = _source(r, band, (x0, y0, width, height), t, method)
        bands.append(Band(str(spec), dtype, (source,), r.nodata))
    mask = None
    if cloud_mask is not None:
        m = _probe(cloud_mask.asset, item.id)
        if m.crs != crs:
            raise InputError(
                f"item {item.id}: cloud mask asset {cloud_mask.asset.key!r} is in another CRS "
                f"than its bands ({m.crs} and {crs})"
            )
        lut = cloud_mask.kind.lut(m.dtypes[0])
        mask = replace(_source(m, 1, (x0, y0, width, height), t, "nearest"),
                       resampling="nearest", nodata=None, lut=lut)  # fmt: skip
    metadata = {
        "STAC_ITEM_ID": item.id,
        "STAC_ITEM_VERSION": item.version,
        "STAC_ITEM_DATETIME": item.datetime,
        "STAC_COLLECTION": item.collection or "",
        "STAC_ITEM_HREF": item.href or "",
        "STAC_BANDS": str(band_map),
        "STAC_WINDOW": f"{col0},{row0},{width},{height} (col,row,width,height) of "
        f"{without_token(fine.path)}",
    }
    return write_vrt(
        Path(out_dir) / f"{safe_name(item.id)}.vrt",
        width=width, height=height, crs_wkt=crs.to_wkt(),
        transform=(x0, t.a, 0.0, y0, 0.0, t.e), bands=bands, metadata=metadata, mask=mask,
    )  # fmt: skip


def _source(
    r: _Raster,
    band: int,
    area: tuple[float, float, int, int],
    grid: Affine,
    resampling: str,
) -> Source:
    """Band `band` of `r` over `area` (x0, y0, width, height) of the VRT's grid `grid`: pixels
    copied where `r` lies on that grid, else resampled with `resampling`."""
    x0, y0, width, height = area
    src_window = (
        (x0 - r.transform.c) / r.transform.a,
        (y0 - r.transform.f) / r.transform.e,
        width * grid.a / r.transform.a,
        height * grid.e / r.transform.e,
    )
    same_grid = (
        all(abs(v - round(v)) < 1e-6 for v in src_window)
        and math.isclose(r.transform.a, grid.a, rel_tol=1e-9)
        and math.isclose(r.transform.e, grid.e, rel_tol=1e-9)
    )
    if same_grid:
        src_window = (
            float(round(src_window[0])), float(round(src_window[1])),
            float(round(src_window[2])), float(round(src_window[3])),
        )  # fmt: skip
    return Source(
        path=r.path, band=band, width=r.width, height=r.height, dtype=r.dtypes[band - 1],
        block=r.block, window=src_window, resampling=None if same_grid else resampling,
        nodata=r.nodata,
    )  # fmt: skip


def safe_name(item_id: str) -> str:
    """An item id as a file name: characters other than letters, digits, `._-` become `_`."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", item_id).lstrip(".")
    return name or "item"


def _aoi_window(
    grid: _Raster, aoi: BaseGeometry | Sequence[float] | None, crs: CRS, item_id: str
) -> tuple[int, int, int, int]:
    """(col, row, width, height) of the pixels of `grid` that cover the AOI."""
    if aoi is None:
        return 0, 0, grid.width, grid.height
    geom = aoi if isinstance(aoi, BaseGeometry) else box(*aoi)
    west, south, east, north = geom.bounds
    step = max(east - west, north - south) / 64 or 1e-4
    dense = shapely.segmentize(geom, step)  # edges curve once projected
    native = shape(transform_geom("EPSG:4326", crs, mapping(dense)))
    minx, miny, maxx, maxy = native.bounds
    inv = ~grid.transform
    cols, rows = zip(*(inv @ (x, y) for x in (minx, maxx) for y in (miny, maxy)), strict=True)
    eps = 1e-6
    c0 = max(0, math.floor(min(cols) + eps))
    c1 = min(grid.width, math.ceil(max(cols) - eps))
    r0 = max(0, math.floor(min(rows) + eps))
    r1 = min(grid.height, math.ceil(max(rows) - eps))
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"item {item_id}: the area of interest does not overlap its assets")
    return c0, r0, c1 - c0, r1 - r0
