"""STAC items and their assets, and `find_items`: search an API or walk a static catalog."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pystac
import pystac_client
from pystac_client import ConformanceClasses
from pystac_client.stac_api_io import StacApiIO
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from geo.errors import InputError
from geo.ingest.stac.query import cql2_filter, query_extension
from geo.ingest.stac.source import MAX_ITEMS, StacSource
from geo.ingest.stac.window import TimeWindow
from geo.ingest.vrt import gdal_path
from geo.options import flag

log = logging.getLogger(__name__)

# Item search extension conformance classes (pystac-client's regexes), and which to use.
_FILTER, _QUERY, _SORT = (ConformanceClasses.FILTER, ConformanceClasses.QUERY,
                          ConformanceClasses.SORT)  # fmt: skip
_CATEGORICAL_ROLES = {"classification", "data-mask", "cloud", "cloud-shadow", "snow-ice",
                      "land-water", "water-mask"}  # fmt: skip
_CATEGORICAL_KEYS = {"scl", "qa_pixel", "qa_radsat", "fmask", "mask"}
_TIMEOUT = (30, 120)  # seconds to connect, and between bytes of an answer (STAC JSON)


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
    A server that does not answer, or answers with a server error, raises ConnectionError (an
    OSError: a later run may succeed); a source that is not STAC raises InputError.
    """
    window = source.window(now)
    area = source.area()
    kind: str = source.kind
    url = source.url
    root: Any = None
    if kind == "auto":
        kind, root = _detect(url, headers)
    if kind == "api":
        found: Iterable[pystac.Item] = _search(source, window, area, modifier, headers)
    else:
        seen: set[str] = set()  # the collections of the catalog
        found = list(
            _walk(root if root is not None else _read_static(url), source.collections, seen)
        )
        _check_static(source, found, seen)
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
    """A non-JSON answer, or a client error (404, 401, ...) other than 429, is an InputError; a
    network failure or a server error is a ConnectionError naming the URL (an OSError, which
    tasks retry: a later run may succeed)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status != 429:
        return InputError(f"--stac {url}: HTTP {status} ({_first_line(exc)})")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return InputError(f"--stac {url}: not STAC JSON ({_first_line(exc)})")
    return ConnectionError(f"--stac {url}: unavailable ({_first_line(exc)})")


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


def _check_static(source: StacSource, found: list[pystac.Item], seen: set[str]) -> None:
    """What a static catalog tells of the filters, before they silently match nothing run after
    run: a collection it does not hold is refused (`seen`: those it holds), a queried property
    none of its items carries (a misspelt name) is warned about."""
    seen = seen | {i.collection_id for i in found if i.collection_id}
    missing = [c for c in source.collections if c not in seen]
    if missing:
        raise InputError(
            f"{flag('collection')} {','.join(missing)}: {source.url} holds no such collection "
            f"(its collections: {', '.join(sorted(seen)) or 'none'})"
        )
    for condition in source.conditions:
        if found and not any(condition.prop in i.properties for i in found):
            log.warning(
                "%s %s: no item of %s has the property %r (misspelt?), so none matches",
                flag("query"), condition, source.url, condition.prop,
            )  # fmt: skip


def _walk(root: Any, collections: tuple[str, ...], seen: set[str]) -> Iterator[pystac.Item]:
    """Every item under a static catalog or collection, skipping collections not asked for;
    the ids of the collections met go into `seen`."""
    wanted = set(collections)
    if isinstance(root, pystac.ItemCollection):
        yield from root.items
        return
    if isinstance(root, pystac.Collection):
        seen.add(root.id)
        if wanted and root.id not in wanted:
            return
    stack = [root]
    while stack:
        node = stack.pop()
        yield from node.get_items()
        for child in node.get_children():
            if isinstance(child, pystac.Collection):
                seen.add(child.id)
                if wanted and child.id not in wanted:
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
    # returns is dropped here; otherwise fetch (up to MAX_ITEMS) and keep the newest here.
    if source.max_items is not None and server_filters and client.conforms_to(_SORT):
        kwargs["max_items"] = source.max_items
        kwargs["sortby"] = [{"field": "properties.datetime", "direction": "desc"}]
    else:
        kwargs["max_items"] = MAX_ITEMS
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
