"""New imagery from STAC catalogs: find the items to predict, and stack each one's bands as a VRT.

A `StacSource` names a STAC API (searched with pystac-client) or a static catalog (walked with
pystac, from a local path or an http(s) URL), an area (a lon/lat bbox or a vector file), a time
window (ISO, or relative such as `P10D` / `last 10 days`, resolved at each run), a query such as
`eo:cloud_cover<20`, and a cap on the number of items. `find_items` returns the matching items
in a deterministic order, each with its version tag (`updated`, else `created`, else its
datetime) for the ingest record (`geo.ingest.records`).

A `BandMap` (`parse_band_map("red,green,blue,nir")`) says which asset feeds each band the model
was trained on. `stack_item` writes ITEM_ID.vrt: the mapped assets in model band order, over the
area of interest only, on the grid of the finest mapped asset (coarser ones resampled), in the
assets' CRS. Its sources are GDAL /vsicurl/ (or /vsis3/, ...) paths, so reading a window of the
VRT fetches only the COG tiles under it, by HTTP range requests; nothing is downloaded whole.

`asset_signer` signs the items' asset URLs where the catalog needs it (Planetary Computer's SAS
tokens). Reading remote rasters: `geo.io.raster.open_raster` applies `REMOTE_GDAL_ENV` to VRTs and
URLs.
"""

from __future__ import annotations

from geo.ingest.stac.bands import BandMap, BandSpec, parse_band_map
from geo.ingest.stac.items import StacAsset, StacItem, find_items
from geo.ingest.stac.query import Condition, cql2_filter, parse_query, query_extension
from geo.ingest.stac.signing import asset_signer
from geo.ingest.stac.source import StacSource, read_aoi
from geo.ingest.stac.stack import AssetUnreadable, safe_name, stack_item
from geo.ingest.stac.window import parse_duration, parse_window
from geo.io.storage import REMOTE_GDAL_ENV

__all__ = [
    "REMOTE_GDAL_ENV",
    "AssetUnreadable",
    "BandMap",
    "BandSpec",
    "Condition",
    "StacAsset",
    "StacItem",
    "StacSource",
    "asset_signer",
    "cql2_filter",
    "find_items",
    "parse_band_map",
    "parse_duration",
    "parse_query",
    "parse_window",
    "query_extension",
    "read_aoi",
    "safe_name",
    "stack_item",
]
