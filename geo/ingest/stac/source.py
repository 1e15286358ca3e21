"""`StacSource`: a STAC API or static catalog, an area, a time window, a query, a cap."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from geo.errors import InputError
from geo.ingest.stac.query import Condition, parse_query, query_extension
from geo.ingest.stac.window import TimeWindow, parse_window

MAX_ITEMS = 10_000


@dataclass(frozen=True)
class StacSource:
    """Where to look for new imagery, and which items to take.

    url: a STAC API root (https://earth-search.aws.element84.com/v1) or a static catalog: a local
        path (a catalog.json / collection.json, an item collection file, or a folder holding one)
        or its http(s) URL. `kind="auto"` asks an http(s) URL whether it offers item search.
    collections: collection ids (required for an API; a filter for a static catalog); a
        comma-separated string is accepted.
    bbox: (west, south, east, north) in degrees, or aoi: a vector file (any CRS) whose union is
        the area of interest. Neither: whole items.
    datetime: an ISO instant, date or interval (`2024-06-01/2024-06-30`, `2024-06-01/..`), or a
        window relative to each run (`P10D`, `PT12H`, `last 10 days`, `2024-06-01/P10D`).
    query: conditions such as `eo:cloud_cover<20` (see `parse_query`). Sent to an API as a CQL2
        filter or a query-extension object when it conforms to one; always checked here too.
    max_items: at most this many items (an API is asked for the newest first when it can sort).
    """

    url: str
    collections: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    aoi: str | None = None
    datetime: str | None = None
    query: tuple[str, ...] = ()
    max_items: int | None = None
    kind: Literal["auto", "api", "static"] = "auto"

    def __post_init__(self) -> None:
        url = str(self.url).strip()
        if not url:
            raise InputError("--stac: give a STAC API URL or a static catalog path or URL")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https") and len(scheme) > 1:
            raise InputError(f"--stac {url}: give an http(s) URL or a local path")
        if not scheme or len(scheme) == 1:
            if self.kind == "api":
                raise InputError(f"--stac {url}: a STAC API is an http(s) URL")
            if not Path(url).exists():
                raise InputError(f"--stac {url}: no such catalog file or folder")
        if self.kind not in ("auto", "api", "static"):
            raise InputError(f"--stac-kind {self.kind}: give auto, api or static")
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "collections", _names(self.collections))
        if self.kind == "api" and not self.collections:
            raise InputError(f"--stac {url}: name a --collection to search")
        object.__setattr__(self, "bbox", _bbox(self.bbox))
        if self.bbox is not None and self.aoi is not None:
            raise InputError("--bbox and --aoi: give one area of interest, not both")
        if self.aoi is not None:
            aoi = str(self.aoi)
            object.__setattr__(self, "aoi", aoi)
            if "://" not in aoi and not Path(aoi).exists():
                raise InputError(f"--aoi {aoi}: no such vector file")
        if self.datetime is not None:
            text = str(self.datetime).strip()
            object.__setattr__(self, "datetime", text or None)
            if text:
                parse_window(text)
        query = (self.query,) if isinstance(self.query, str) else tuple(self.query or ())
        conditions = parse_query(query)
        query_extension(conditions)  # refuses contradictions
        object.__setattr__(self, "query", tuple(str(c) for c in conditions))
        if self.max_items is not None:
            if isinstance(self.max_items, bool) or not isinstance(self.max_items, int):
                raise InputError(f"--max-items {self.max_items}: give a whole number")
            if not 1 <= self.max_items <= MAX_ITEMS:
                raise InputError(f"--max-items {self.max_items}: give 1 to {MAX_ITEMS}")

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return parse_query(self.query)

    def window(self, now: dt.datetime | None = None) -> TimeWindow | None:
        """The time window for a run at `now` (relative windows end then); None: any time."""
        return parse_window(self.datetime, now) if self.datetime else None

    def area(self) -> BaseGeometry | None:
        """The area of interest in lon/lat degrees (EPSG:4326); None for whole items."""
        if self.bbox is not None:
            return box(*self.bbox)
        if self.aoi is None:
            return None
        return read_aoi(self.aoi)

    def describe(self) -> str:
        """One line for logs and reports."""
        parts = [self.url]
        if self.collections:
            parts.append("collections " + ",".join(self.collections))
        if self.bbox:
            parts.append("bbox " + ",".join(f"{v:g}" for v in self.bbox))
        if self.aoi:
            parts.append(f"aoi {self.aoi}")
        if self.datetime:
            parts.append(f"datetime {self.datetime}")
        if self.query:
            parts.append("query " + ",".join(self.query))
        if self.max_items:
            parts.append(f"max {self.max_items} items")
        return "; ".join(parts)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    names = tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))
    return names


def _bbox(value: Any) -> tuple[float, float, float, float] | None:
    if value is None or value == "":
        return None
    raw = value.replace(" ", ",").split(",") if isinstance(value, str) else list(value)
    raw = [v for v in raw if v != ""]
    try:
        west, south, east, north = (float(v) for v in raw)
    except (TypeError, ValueError):
        raise InputError(f"--bbox {value}: give west,south,east,north in degrees") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError(f"--bbox {value}: give finite numbers")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(
            f"--bbox {value}: give west,south,east,north in degrees (west < east within "
            "-180..180, south < north within -90..90)"
        )
    return west, south, east, north


def read_aoi(path: str) -> BaseGeometry:
    """The union of a vector file's geometries in lon/lat; InputError when it has none or no CRS."""
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio's errors name the file; keep one line
        raise InputError(f"--aoi {path}: not a vector file GDAL can read ({exc})") from None
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise InputError(f"--aoi {path}: no geometries")
    if frame.crs is None:
        raise InputError(f"--aoi {path}: no CRS (save it with one, e.g. as a GeoPackage)")
    area = frame.to_crs("EPSG:4326").geometry.union_all()
    if not area.is_valid:
        area = shapely.make_valid(area)
    if area.is_empty or area.area == 0:
        raise InputError(f"--aoi {path}: the geometries enclose no area")
    return area
