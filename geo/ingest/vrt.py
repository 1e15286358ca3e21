"""GDAL paths for STAC asset hrefs (the VRT they are stacked in is written by `geo.io.vrt`)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from geo.errors import InputError
from geo.io.storage import READ_ONLY, SCHEMES
from geo.io.storage import gdal_path as storage_gdal_path


def gdal_path(href: str) -> str:
    """The path GDAL reads an asset href through, without downloading it whole: http(s), s3,
    gs and az URLs through GDAL's virtual file systems (`geo.io.storage.gdal_path`; query
    strings such as signed-URL tokens are kept), file:///path as the local path, /vsi... and
    plain paths as they are. Relative hrefs must be made absolute first (pystac does, from the
    item's own href)."""
    parts = urlsplit(href)
    if parts.scheme.lower() == "file":
        return url2pathname(parts.path)
    if parts.scheme and parts.scheme.lower() not in SCHEMES and len(parts.scheme) > 1:
        raise InputError(
            f"asset href {href}: {parts.scheme}:// cannot be read "
            "(use http(s), s3, gs, az, file or a path)"
        )
    if parts.scheme.lower() in SCHEMES and parts.scheme.lower() not in READ_ONLY:
        if not parts.netloc:
            raise InputError(f"asset href {href}: no bucket or container after {parts.scheme}://")
        return storage_gdal_path(f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}")
    return storage_gdal_path(href)
