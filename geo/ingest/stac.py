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

Reading remote rasters: `geo.io.raster.open_raster` applies `REMOTE_GDAL_ENV` to VRTs and URLs.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pystac
import pystac_client
import rasterio
import shapely
from affine import Affine
from pystac_client import ConformanceClasses
from pystac_client.stac_api_io import StacApiIO
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geo.errors import InputError
from geo.ingest.vrt import GDAL_TYPES, Band, Source, gdal_path, write_vrt
from geo.io.storage import REMOTE_GDAL_ENV

__all__ = [
    "REMOTE_GDAL_ENV", "AssetUnreadable", "BandMap", "BandSpec", "Condition", "StacAsset",
    "StacItem", "StacSource", "cql2_filter", "find_items", "parse_band_map", "parse_duration",
    "parse_query", "parse_window", "query_extension", "read_aoi", "safe_name", "stack_item",
]  # fmt: skip

# Item search extension conformance classes (pystac-client's regexes), and which to use.
_FILTER, _QUERY, _SORT = (ConformanceClasses.FILTER, ConformanceClasses.QUERY,
                          ConformanceClasses.SORT)  # fmt: skip
_CATEGORICAL_ROLES = {"classification", "data-mask", "cloud", "cloud-shadow", "snow-ice",
                      "land-water", "water-mask"}  # fmt: skip
_CATEGORICAL_KEYS = {"scl", "qa_pixel", "qa_radsat", "fmask", "mask"}
_MAX_ITEMS = 10_000
_TIMEOUT = (30, 120)  # seconds to connect, and between bytes of an answer (STAC JSON)

# ---------------------------------------------------------------------------------------------
# Query: `eo:cloud_cover<20`, `platform=sentinel-2b`, joined by `,`, `;` or ` and `.

_OPS: dict[str, tuple[str, str, Callable[[Any, Any], bool]]] = {
    # ours: (query extension, CQL2, python)
    "<": ("lt", "<", operator.lt),
    "<=": ("lte", "<=", operator.le),
    ">": ("gt", ">", operator.gt),
    ">=": ("gte", ">=", operator.ge),
    "=": ("eq", "=", operator.eq),
    "!=": ("neq", "<>", operator.ne),
}
_CONDITION = re.compile(r"^([A-Za-z_][\w:.\-]*)\s*(<=|>=|!=|==|<|>|=)\s*(.+)$")
_SPLIT = re.compile(r"\s*(?:,|;|\band\b)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """`property op value`: a number, true/false, or text (quotes optional)."""

    prop: str
    op: str
    value: float | int | bool | str

    def __str__(self) -> str:
        value = self.value
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"{self.prop}{self.op}{text}"

    def matches(self, properties: Mapping[str, Any]) -> bool:
        """Whether an item's properties meet the condition (a missing property does not)."""
        have, want = properties.get(self.prop), self.value
        if have is None:
            return False
        if isinstance(want, bool) or isinstance(have, bool):
            comparable = (
                isinstance(want, bool) and isinstance(have, bool) and self.op in ("=", "!=")
            )
        elif isinstance(want, int | float):
            comparable = isinstance(have, int | float)
        else:
            comparable = isinstance(have, str)
        if not comparable:
            return False
        return bool(_OPS[self.op][2](have, want))


def parse_query(text: str | Sequence[str] | None) -> tuple[Condition, ...]:
    """`"eo:cloud_cover<20, platform=sentinel-2b"` (or a list of such) as conditions.

    Operators: < <= > >= = (or ==) !=. Values: numbers, true/false, or text ('quoted' or not).
    """
    if not text:
        return ()
    parts = [text] if isinstance(text, str) else list(text)
    conditions = []
    for part in (p for chunk in parts for p in _SPLIT.split(chunk.strip()) if p):
        match = _CONDITION.match(part.strip())
        if not match:
            raise InputError(
                f"--query {part!r}: write PROPERTY OP VALUE, e.g. eo:cloud_cover<20 "
                "(operators < <= > >= = !=; join several with ',')"
            )
        prop, op, raw = match.groups()
        conditions.append(Condition(prop, "=" if op == "==" else op, _value(raw.strip())))
    return tuple(conditions)


def _value(raw: str) -> float | int | bool | str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            number = kind(raw)
        except ValueError:
            continue
        if math.isfinite(number):
            return number
    return raw


def query_extension(conditions: Sequence[Condition]) -> dict[str, dict[str, Any]]:
    """The conditions as the STAC API query extension's `query` object."""
    query: dict[str, dict[str, Any]] = {}
    for c in conditions:
        ops = query.setdefault(c.prop, {})
        name = _OPS[c.op][0]
        if name in ops:
            raise InputError(f"--query: {c.prop} has two conditions {c.op} (keep one)")
        ops[name] = c.value
    return query


def cql2_filter(conditions: Sequence[Condition]) -> dict[str, Any]:
    """The conditions as one CQL2-JSON filter (the STAC API filter extension)."""
    args = [{"op": _OPS[c.op][1], "args": [{"property": c.prop}, c.value]} for c in conditions]
    return args[0] if len(args) == 1 else {"op": "and", "args": args}


# ---------------------------------------------------------------------------------------------
# Time windows: ISO instants, dates and intervals (open with ".."), durations (P10D, PT6H, P2W),
# "last 10 days", and START/DURATION or DURATION/END.

_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W|(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?)$"
)
_LAST = re.compile(r"^last\s+(?:(\d+)\s+)?(minute|hour|day|week)s?$", re.IGNORECASE)
_UNITS = {"minute": "minutes", "hour": "hours", "day": "days", "week": "weeks"}
TimeWindow = tuple[dt.datetime | None, dt.datetime | None]


def parse_duration(text: str) -> dt.timedelta | None:
    """`P10D`, `PT12H`, `P2W`, `P1DT6H`, `last 10 days`, `last day` as a timedelta; else None."""
    text = text.strip()
    if match := _LAST.match(text):
        count, unit = match.groups()
        return dt.timedelta(**{_UNITS[unit.lower()]: int(count or 1)})
    match = _DURATION.match(text.upper())
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        return None
    g = {k: int(v) for k, v in match.groupdict().items() if v}
    return dt.timedelta(
        weeks=g.get("w", 0), days=g.get("d", 0), hours=g.get("h", 0),
        minutes=g.get("m", 0), seconds=g.get("s", 0),
    )  # fmt: skip


def parse_window(text: str, now: dt.datetime | None = None) -> TimeWindow:
    """The (start, end) UTC datetimes of a time window; None for an open end.

    A date covers its whole day; a relative window ends at `now` (default: the current time).
    Raises InputError naming the window when it cannot be read, or ends before it starts.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    text = text.strip()
    if (duration := parse_duration(text)) is not None:
        window: TimeWindow = (now - duration, now)
    elif "/" in text:
        first, _, last = text.partition("/")
        d0, d1 = parse_duration(first), parse_duration(last)
        if d0 is not None and d1 is not None:
            raise InputError(f"--datetime {text}: give one end as a date or time")
        start = None if d0 is not None else _instant(first, text, end=False)
        end = None if d1 is not None else _instant(last, text, end=True)
        if d0 is not None:
            if end is None:
                raise InputError(f"--datetime {text}: a duration needs a date on the other side")
            start = end - d0
        if d1 is not None:
            if start is None:
                raise InputError(f"--datetime {text}: a duration needs a date on the other side")
            end = start + d1
        window = (start, end)
    else:
        window = (_instant(text, text, end=False), _instant(text, text, end=True))
        if window[0] is None:
            raise InputError(f"--datetime {text}: give a date, an interval or a duration")
    if window[0] and window[1] and window[1] < window[0]:
        raise InputError(f"--datetime {text}: the window ends before it starts")
    return window


def _instant(part: str, text: str, *, end: bool) -> dt.datetime | None:
    part = part.strip()
    if part in ("", ".."):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", part):
            day = dt.datetime.fromisoformat(part).replace(tzinfo=dt.UTC)
            return day + dt.timedelta(days=1, microseconds=-1) if end else day
        value = dt.datetime.fromisoformat(part)
    except ValueError:
        raise InputError(
            f"--datetime {text}: {part!r} is not an ISO date or time, nor a duration such as "
            "P10D or 'last 10 days'"
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------------
# The source.


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
            if not 1 <= self.max_items <= _MAX_ITEMS:
                raise InputError(f"--max-items {self.max_items}: give 1 to {_MAX_ITEMS}")

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


# ---------------------------------------------------------------------------------------------
# Items.


@dataclass(frozen=True)
class StacAsset:
    """One asset of an item: its absolute href and what the band mapping needs to know."""

    key: str
    href: str
    media_type: str | None = None
    roles: tuple[str, ...] = ()
    common_names: tuple[str | None, ...] = ()  # one per band, from eo:bands / bands
    categorical: bool = False  # class or mask values: resampled with nearest

    @property
    def path(self) -> str:
        """The GDAL path that reads it by range requests (see `geo.ingest.vrt.gdal_path`)."""
        return gdal_path(self.href)


@dataclass(frozen=True)
class StacItem:
    """An item found in a STAC source. `version` is its `updated` time, else `created`, else
    its datetime: a new version of an item is predicted again."""

    id: str
    collection: str | None
    datetime: str  # ISO 8601, UTC (start_datetime when the item has a range)
    version: str
    bbox: tuple[float, ...] | None
    geometry: dict[str, Any] | None = field(repr=False)
    assets: dict[str, StacAsset] = field(repr=False)
    properties: dict[str, Any] = field(repr=False, default_factory=dict)
    href: str | None = None  # where the item's JSON was read from, when known
    stac: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """(id, version): what the ingest record compares."""
        return self.id, self.version

    @classmethod
    def from_pystac(cls, item: pystac.Item) -> StacItem:
        props = dict(item.properties)
        when = item.datetime or item.common_metadata.start_datetime
        stamp = _iso(when) if when else ""
        version = props.get("updated") or props.get("created") or stamp
        assets = {key: _asset(key, asset) for key, asset in sorted(item.get_assets().items())}
        return cls(
            id=item.id,
            collection=item.collection_id,
            datetime=stamp,
            version=str(version),
            bbox=tuple(item.bbox) if item.bbox else None,
            geometry=item.geometry,
            assets=assets,
            properties=props,
            href=item.get_self_href(),
            stac=item.to_dict(transform_hrefs=False),
        )

    def to_dict(self) -> dict[str, Any]:
        """The item's STAC JSON with absolute asset hrefs (JSON-serialisable, for task results)."""
        data = dict(self.stac)
        data["assets"] = {
            k: {**data.get("assets", {}).get(k, {}), "href": a.href} for k, a in self.assets.items()
        }
        if self.href:
            data["links"] = [lk for lk in data.get("links", []) if lk.get("rel") != "self"]
            data["links"].append({"rel": "self", "href": self.href, "type": "application/json"})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StacItem:
        """Inverse of `to_dict`."""
        self_href = next(
            (lk["href"] for lk in data.get("links", []) if lk.get("rel") == "self"), None
        )
        return cls.from_pystac(pystac.Item.from_dict(dict(data), href=self_href))


def _iso(value: dt.datetime) -> str:
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def _asset(key: str, asset: pystac.Asset) -> StacAsset:
    extra = asset.extra_fields
    bands = extra.get("eo:bands") or extra.get("bands") or []
    names = tuple(
        (b.get("common_name") or b.get("eo:common_name")) if isinstance(b, dict) else None
        for b in bands
    )
    roles = tuple(asset.roles or ())
    categorical = (
        "classification:classes" in extra
        or any(isinstance(b, dict) and "classification:classes" in b for b in bands)
        or any(isinstance(b, dict) and "classification:classes" in b
               for b in extra.get("raster:bands") or [])
        or bool(_CATEGORICAL_ROLES & set(roles))
        or key.lower() in _CATEGORICAL_KEYS
    )  # fmt: skip
    return StacAsset(
        key=key,
        href=asset.get_absolute_href() or asset.href,
        media_type=asset.media_type,
        roles=roles,
        common_names=names,
        categorical=categorical,
    )


def find_items(
    source: StacSource,
    *,
    now: dt.datetime | None = None,
    modifier: Callable[[Any], Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[StacItem]:
    """The items of `source` that match its area, time window and query, sorted by datetime,
    then collection and id. `now` anchors relative windows (default: the current time).

    `modifier` is applied to each pystac item before it is read (pystac-client's hook), e.g.
    `planetary_computer.sign_inplace` for Planetary Computer; `headers` go with API requests.
    Network and server errors propagate (a later run may succeed); a source that is not STAC
    raises InputError.
    """
    window = source.window(now)
    area = source.area()
    kind: str = source.kind
    url = source.url
    root: Any = None
    if kind == "auto":
        kind, root = _detect(url, headers)
    if kind == "api":
        found = _search(source, window, area, modifier, headers)
    else:
        found = _walk(root if root is not None else _read_static(url), source.collections)
    items: dict[tuple[str | None, str], StacItem] = {}
    for item in found:
        if not _matches(item, source, window, area):
            continue
        if modifier is not None and kind != "api":  # pystac-client applied it to API items
            modifier(item)
        found_item = StacItem.from_pystac(item)
        items.setdefault((found_item.collection, found_item.id), found_item)
    ordered = sorted(items.values(), key=lambda i: (i.datetime, i.collection or "", i.id))
    if source.max_items is not None and len(ordered) > source.max_items:
        ordered = ordered[-source.max_items :]  # the newest
    return ordered


def _detect(url: str, headers: Mapping[str, str] | None) -> tuple[str, Any]:
    """("api", None) when the URL offers item search, else ("static", its root object)."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return "static", None
    try:
        data = StacApiIO(headers=dict(headers or {}), timeout=_TIMEOUT).read_json(url)
    except Exception as exc:
        raise _unreachable(url, exc) from exc
    conforms = data.get("conformsTo") or []
    searchable = any(re.match(_ITEM_SEARCH, str(c)) for c in conforms)
    if searchable or any(lk.get("rel") == "search" for lk in data.get("links", [])):
        return "api", None
    return "static", _from_dict(data, url)


_ITEM_SEARCH = r"https://api\.stacspec\.org/v1\.\d+\.\d+(?:-[\w\.]+)?/item-search"


def _unreachable(url: str, exc: Exception) -> Exception:
    """A network failure or a server error keeps its type (a later run may succeed); a non-JSON
    answer, or a client error (404, 401, ...) other than 429, is an InputError."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return InputError(f"--stac {url}: HTTP {status} ({_first_line(exc)})")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return InputError(f"--stac {url}: not STAC JSON ({_first_line(exc)})")
    return exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _read_static(url: str) -> Any:
    path = Path(url)
    if "://" not in url and path.is_dir():
        for name in ("catalog.json", "collection.json"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise InputError(f"--stac {url}: the folder has no catalog.json or collection.json")
        url = str(path)
    try:
        data = pystac.StacIO.default().read_json(url)
    except Exception as exc:
        raise _unreachable(url, exc) from exc
    return _from_dict(data, str(path.resolve()) if "://" not in url else url)


def _from_dict(data: dict[str, Any], href: str) -> Any:
    kind = data.get("type")
    try:
        if kind == "FeatureCollection":
            return pystac.ItemCollection.from_dict(data, preserve_dict=False)
        if kind == "Feature":
            item = pystac.Item.from_dict(data, href=href)
            item.set_self_href(href)
            return pystac.ItemCollection([item])
        if kind in ("Catalog", "Collection"):
            obj = pystac.read_dict(data, href=href)
            obj.set_self_href(href)
            return obj
    except Exception as exc:
        raise InputError(f"--stac {href}: not valid STAC ({exc})") from None
    raise InputError(f"--stac {href}: not a STAC catalog, collection or item collection")


def _walk(root: Any, collections: tuple[str, ...]) -> Iterator[pystac.Item]:
    """Every item under a static catalog or collection, skipping collections not asked for."""
    wanted = set(collections)
    if isinstance(root, pystac.ItemCollection):
        yield from root.items
        return
    if wanted and isinstance(root, pystac.Collection) and root.id not in wanted:
        return
    stack = [root]
    while stack:
        node = stack.pop()
        yield from node.get_items()
        for child in node.get_children():
            if wanted and isinstance(child, pystac.Collection) and child.id not in wanted:
                continue
            stack.append(child)


def _search(
    source: StacSource,
    window: TimeWindow | None,
    area: BaseGeometry | None,
    modifier: Callable[[Any], Any] | None,
    headers: Mapping[str, str] | None,
) -> Iterator[pystac.Item]:
    if not source.collections:
        raise InputError(f"--stac {source.url}: name a --collection to search")
    try:
        client = pystac_client.Client.open(
            source.url, headers=dict(headers or {}), modifier=modifier, timeout=_TIMEOUT
        )
    except pystac_client.exceptions.APIError as exc:
        raise _unreachable(source.url, exc) from exc
    kwargs: dict[str, Any] = {"collections": list(source.collections)}
    if area is not None:
        kwargs["bbox"] = [round(v, 7) for v in area.bounds]  # exact area checked below
    if window is not None:
        kwargs["datetime"] = window
    conditions = source.conditions
    server_filters = not conditions
    if conditions and client.conforms_to(_FILTER):
        kwargs.update(filter=cql2_filter(conditions), filter_lang="cql2-json")
        server_filters = True
    elif conditions and client.conforms_to(_QUERY):
        kwargs["query"] = query_extension(conditions)
        server_filters = True
    # The server may stop at max_items only when it returns the newest first and nothing it
    # returns is dropped here; otherwise fetch (up to _MAX_ITEMS) and keep the newest here.
    if source.max_items is not None and server_filters and client.conforms_to(_SORT):
        kwargs["max_items"] = source.max_items
        kwargs["sortby"] = [{"field": "properties.datetime", "direction": "desc"}]
    else:
        kwargs["max_items"] = _MAX_ITEMS
    kwargs["limit"] = min(kwargs["max_items"], 100)
    yield from client.search(**kwargs).items()


def _matches(
    item: pystac.Item, source: StacSource, window: TimeWindow | None, area: BaseGeometry | None
) -> bool:
    if source.collections and item.collection_id not in source.collections:
        return False
    if window is not None:
        start = item.common_metadata.start_datetime or item.datetime
        end = item.common_metadata.end_datetime or item.datetime
        if start is None or end is None:
            return False
        lo, hi = window
        if (hi is not None and _utc(start) > hi) or (lo is not None and _utc(end) < lo):
            return False
    if area is not None:
        if item.geometry is not None:
            footprint = shape(item.geometry)
        elif item.bbox is not None:
            footprint = box(*item.bbox[:2], *item.bbox[-2:])
        else:
            return False
        if not footprint.intersects(area):
            return False
    props = {**item.properties, "id": item.id, "collection": item.collection_id}
    return all(c.matches(props) for c in source.conditions)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------------
# Band mapping: which asset (and band of it) feeds each band the model was trained on.


@dataclass(frozen=True)
class BandSpec:
    model_band: int  # 1-based, as in the adapter metadata's `bands`
    asset: str  # an asset key, or an eo:bands common name
    band: int = 1  # 1-based band within the asset

    def __str__(self) -> str:
        return self.asset if self.band == 1 else f"{self.asset}:{self.band}"


@dataclass(frozen=True)
class BandMap:
    """Asset keys for the model's bands, in the model's order."""

    bands: tuple[BandSpec, ...]

    def __str__(self) -> str:
        return ",".join(str(b) for b in self.bands)

    @property
    def model_bands(self) -> tuple[int, ...]:
        return tuple(b.model_band for b in self.bands)

    def resolve(self, item: StacItem) -> list[tuple[BandSpec, StacAsset, int]]:
        """(spec, asset, band within the asset) for each model band. A key that is not an asset
        key may be a common name (eo:bands) of exactly one single-band asset, or of one band of
        one asset. Raises InputError naming the missing key and listing the item's assets."""
        return [(spec, *_find_asset(item, spec, str(self))) for spec in self.bands]


def parse_band_map(text: str | Sequence[str], model_bands: Sequence[int] | None = None) -> BandMap:
    """Parse `red,green,blue,nir` (asset keys for the model's bands in order) or
    `1=red,2=green,3=blue,4=nir`; `KEY:N` takes band N of a multi-band asset (`visual:1`).

    `model_bands` are the adapter metadata's `bands` (default 1..N). The map must name each of
    them exactly once; an asset may feed several.
    """
    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text)]
    label = text if isinstance(text, str) else ",".join(text)
    if not entries or any(not e for e in entries):
        raise InputError(f"--bands {label!r}: give asset keys separated by commas, e.g. red,green")
    explicit = ["=" in e for e in entries]
    if any(explicit) and not all(explicit):
        raise InputError(f"--bands {label}: name every model band (1=red,2=green) or none")
    wanted = list(model_bands) if model_bands is not None else None
    specs = []
    for i, entry in enumerate(entries):
        if explicit[i]:
            number, _, entry = (s.strip() for s in entry.partition("="))
            if not number.isdigit() or int(number) < 1:
                raise InputError(f"--bands {label}: {number!r} is not a band number (1, 2, ...)")
            model_band = int(number)
        else:
            model_band = wanted[i] if wanted is not None and i < len(wanted) else i + 1
        key, band = entry, 1
        head, sep, tail = entry.rpartition(":")
        if sep and tail.isdigit() and head:
            key, band = head, int(tail)
            if band < 1:
                raise InputError(f"--bands {label}: {entry}: asset bands count from 1")
        specs.append(BandSpec(model_band, key, band))
    numbers = [s.model_band for s in specs]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"--bands {label}: a model band is named twice")
    if wanted is not None and sorted(numbers) != sorted(int(b) for b in wanted):
        raise InputError(
            f"--bands {label}: names {len(specs)} band(s) for model bands {numbers}, but the model "
            f"reads bands {list(wanted)}: give one asset key for each"
        )
    if wanted is not None:
        order = {int(b): i for i, b in enumerate(wanted)}
        specs.sort(key=lambda s: order[s.model_band])
    return BandMap(tuple(specs))


def _find_asset(item: StacItem, spec: BandSpec, label: str) -> tuple[StacAsset, int]:
    if spec.asset in item.assets:
        return item.assets[spec.asset], spec.band
    name = spec.asset.lower()
    hits = [
        (a, i + 1)
        for a in item.assets.values()
        for i, n in enumerate(a.common_names)
        if n and n.lower() == name
    ]
    single = [h for h in hits if len(h[0].common_names) == 1]
    choice = single or hits
    if spec.band == 1 and len({a.key for a, _ in choice}) == 1:
        return choice[0]
    keys = ", ".join(sorted(item.assets))
    if choice:
        options = ", ".join(sorted({a.key for a, _ in choice}))
        raise InputError(
            f"--bands {label}: item {item.id}: {spec.asset!r} is the common name of several "
            f"assets ({options}): give the asset key"
        )
    raise InputError(
        f"--bands {label}: item {item.id} has no asset {spec.asset!r}; its assets: {keys}"
    )


# ---------------------------------------------------------------------------------------------
# Stacking an item's bands over the area of interest.


# Probing a header: no directory listing, and no use of GDAL's cache of remote files (a file that
# failed earlier in this process is asked for again). Tokens are prefixes, split at ':'.
_PROBE_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/:/vsis3/:/vsigs/:/vsiaz/",
}


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
        ) from exc


def stack_item(
    item: StacItem,
    band_map: BandMap,
    aoi: BaseGeometry | Sequence[float] | None,
    out_dir: str | Path,
    *,
    resampling: str = "bilinear",
) -> Path:
    """Write OUT_DIR/ITEM_ID.vrt stacking the mapped assets over the area of interest.

    Band b of the VRT is the model's band b (the adapter metadata's `bands` apply unchanged;
    bands the model does not read are left empty and cost nothing). The grid is that of the
    finest mapped asset, cut to the window covering `aoi` (lon/lat geometry or bbox; None: the
    whole asset); coarser assets are resampled to it with `resampling` (bilinear: continuous
    values), or nearest for categorical ones (class or mask assets). All mapped assets must share
    one CRS; the AOI is reprojected into it. Only each asset's header is read here.

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
            bands.append(Band(f"unused (model band {number} is not read)", dtype, None))
            continue
        spec, asset, band = by_model[number]
        r = rasters[asset.key]
        src_window = (
            (x0 - r.transform.c) / r.transform.a,
            (y0 - r.transform.f) / r.transform.e,
            width * t.a / r.transform.a,
            height * t.e / r.transform.e,
        )
        same_grid = (
            all(abs(v - round(v)) < 1e-6 for v in src_window)
            and math.isclose(r.transform.a, t.a, rel_tol=1e-9)
            and math.isclose(r.transform.e, t.e, rel_tol=1e-9)
        )
        method = None if same_grid else ("nearest" if asset.categorical else resampling)
        if same_grid:
            src_window = (
                float(round(src_window[0])), float(round(src_window[1])),
                float(round(src_window[2])), float(round(src_window[3])),
            )  # fmt: skip
        source = Source(
            path=r.path, band=band, width=r.width, height=r.height, dtype=r.dtypes[band - 1],
            block=r.block, window=src_window, resampling=method, nodata=r.nodata,
        )  # fmt: skip
        bands.append(Band(str(spec), dtype, source, r.nodata))
    metadata = {
        "STAC_ITEM_ID": item.id,
        "STAC_ITEM_VERSION": item.version,
        "STAC_ITEM_DATETIME": item.datetime,
        "STAC_COLLECTION": item.collection or "",
        "STAC_ITEM_HREF": item.href or "",
        "STAC_BANDS": str(band_map),
        "STAC_WINDOW": f"{col0},{row0},{width},{height} (col,row,width,height) of {fine.path}",
    }
    return write_vrt(
        Path(out_dir) / f"{safe_name(item.id)}.vrt",
        width=width, height=height, crs_wkt=crs.to_wkt(),
        transform=(x0, t.a, 0.0, y0, 0.0, t.e), bands=bands, metadata=metadata,
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
