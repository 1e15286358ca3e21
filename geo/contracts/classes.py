"""Class maps: which label values (vector attribute or raster codes) become which class id.

A class map file is JSON or YAML, either a list of classes or a mapping with that list under
`classes` and an optional top-level `unmapped` setting::

    unmapped: ignore          # or: background. Values no class lists become 255 (default) or 0
    classes:
      - name: background      # the first class is class 0, the background
        values: [111, 121]    # optional: label values that mean background
        color: "#000000"
      - name: soybeans
        values: [5]
        color: "#267000"

Class ids are the list positions 0..K-1 (an optional `id` must equal the position). `values` are
matched against the label field (vector labels) or the raster codes (label rasters); numbers and
strings are compared by their text, so `5`, `5.0` and `"5"` are the same value. With vector labels
and no label field, every feature is the one object class of a two-class map (boundary classes
not counted). With label rasters and no class listing `values`, raster code N is class N.

Boundary classes (field boundaries, building outlines) keep touching objects apart::

      - name: field boundary
        boundary: 2 px        # or metres: 20 m
        color: "#e31a1c"

With vector labels, the pixels of each polygon within `boundary` of a pixel outside it (another
polygon, the background) become this class: adjacent parcels are taught apart by a boundary
twice that wide, a parcel meeting background by one that wide. With label rasters the class
takes its `values`, like any class, and the width says how wide the raster's boundaries are. At
most one class is a boundary class; prediction gives its pixels back to the objects they
outline, so that touching objects of one class become separate polygons.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from convlora.config import IGNORE_INDEX
from geo.errors import InputError

IGNORE = IGNORE_INDEX
CLASSES_TAG = "CLASSES"  # a class raster's metadata item: its classes as `ClassMap.to_list` JSON
MODEL_TAG = "MODEL"  # and the model that predicted it (the polygons' `model`)
SCORE_BAND = "probability of the predicted class x 255"  # the band of predict's probability raster
UNMAPPED_CHOICES = ("ignore", "background")
ALIAS_REFUSAL = "YAML aliases (*name) are not allowed in a class map"
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_WIDTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(px|m)\s*$")
# fmt: off
_PALETTE = [
    "#000000", "#e31a1c", "#1f78b4", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3",
    "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bebada", "#80b1d3",
]
# fmt: on


def palette_color(position: int) -> str:
    """The default colour of the class at `position`: the palette's, then (for maps of more
    classes, such as one per crop type) hues a golden angle apart in four shades, each distinct
    from every other and none black."""
    if position < len(_PALETTE):
        return _PALETTE[position]
    k = position - len(_PALETTE)
    hue = (k * 0.381966) % 1.0  # the golden angle, as a fraction of the circle
    saturation, value = ((0.75, 0.95), (0.45, 0.85), (0.85, 0.65), (0.35, 0.6))[(k // 5) % 4]
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * v) for v in (r, g, b)))


def value_order(value: str) -> tuple[float, str]:
    """A sort key for label values as a reader orders them: numbers by value, then text."""
    try:
        return float(value), value
    except ValueError:
        return float("inf"), value


def some_values(values: Sequence[str], limit: int = 20) -> str:
    """The first `limit` of `values`, and how many more there are."""
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def value_key(value: Any) -> str | None:
    """Canonical text of a label value (None for missing values): 5, 5.0 and "5" give "5"."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    try:
        return value_key(float(text))
    except ValueError:
        return text


@dataclass(frozen=True)
class Width:
    """A boundary width: a number of pixels ("2 px") or of metres ("20 m")."""

    value: float
    unit: str  # "px" or "m"

    @classmethod
    def parse(cls, text: Any) -> Width:
        """From "2 px", "2px", "20 m"; ValueError naming the expected form otherwise."""
        match = _WIDTH.match(str(text))
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(f"boundary width {text!r}: give a positive width in px or m (2 px)")
        return cls(float(match.group(1)), match.group(2))

    def pixels(self, pixel_m: float) -> float:
        """The width in pixels of `pixel_m` metres."""
        return self.value if self.unit == "px" else self.value / pixel_m

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


@dataclass(frozen=True)
class ClassInfo:
    """One class: its id (0 = background), name, display colour and the label values it takes;
    `boundary` is the outline width of a boundary class (None for every other class)."""

    id: int
    name: str
    color: str
    values: tuple[str, ...] = ()
    boundary: Width | None = None

    def to_dict(self) -> dict[str, Any]:
        """{"id", "name", "color"} (and "boundary" for a boundary class): how classes travel in
        stores, adapters and outputs."""
        data: dict[str, Any] = {"id": self.id, "name": self.name, "color": self.color}
        if self.boundary is not None:
            data["boundary"] = str(self.boundary)
        return data

    @property
    def rgba(self) -> tuple[int, int, int, int]:
        """Display colour as RGBA; the background (class 0) is fully transparent."""
        value = self.color.lstrip("#")
        r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
        return r, g, b, 0 if self.id == 0 else 255


def boundary_class(classes: Sequence[ClassInfo]) -> ClassInfo | None:
    """The boundary class of a class list, if it has one."""
    return next((c for c in classes if c.boundary is not None), None)


def object_ids(classes: Sequence[ClassInfo]) -> list[int]:
    """The classes whose regions are objects: every class but the background and boundaries."""
    return [c.id for c in classes if c.id != 0 and c.boundary is None]


def parse_class_list(data: Any, source: str) -> tuple[ClassInfo, ...]:
    """Classes from their travelling form [{"id", "name", "color"}, ...]: ids 0..K-1, K >= 2.

    Raises InputError naming `source` (a store, an adapter file) when the list is malformed.
    """
    if not isinstance(data, list) or len(data) < 2:
        raise InputError(f"{source}: expected a list of at least two classes")
    classes = []
    for position, item in enumerate(
        sorted(data, key=lambda c: c.get("id", -1) if isinstance(c, dict) else -1)
    ):
        if not isinstance(item, dict) or item.get("id") != position or "name" not in item:
            raise InputError(f"{source}: class ids must be 0..K-1, each with a name")
        color = _color(item, position, source)
        width = _boundary_width(item, source)
        classes.append(ClassInfo(position, str(item["name"]), color.lower(), (), width))
    _check_boundaries(classes, source)
    return tuple(classes)


def _color(item: dict[str, Any], position: int, source: str) -> str:
    """A class mapping's `color` as #rrggbb (default: the palette's colour for its position)."""
    if "color" in item and item["color"] is None:
        raise InputError(
            f"{source}: class {item['name']!r} has an empty colour; quote it (color: "
            '"#e31a1c"): in YAML an unquoted # starts a comment'
        )
    color = str(item.get("color") or palette_color(position))
    if not _HEX.match(color):
        raise InputError(f"{source}: class {item['name']!r} colour {color!r} is not #rrggbb")
    return color


def _boundary_width(item: dict[str, Any], source: str) -> Width | None:
    """The `boundary` width of a class mapping (None when it has none)."""
    if item.get("boundary") is None:
        return None
    try:
        return Width.parse(item["boundary"])
    except ValueError as err:
        raise InputError(f"{source}: class {item['name']!r}: {err}") from None


def _check_boundaries(classes: Sequence[ClassInfo], source: str) -> None:
    """At most one boundary class, never the background, and at least one object class."""
    boundaries = [c.name for c in classes if c.boundary is not None]
    if len(boundaries) > 1:
        raise InputError(f"{source}: at most one boundary class, got {boundaries}")
    if classes and classes[0].boundary is not None:
        raise InputError(f"{source}: the background (class 0) cannot be a boundary class")
    if boundaries and not object_ids(classes):
        raise InputError(f"{source}: a boundary class needs an object class to outline")


@dataclass(frozen=True)
class ClassMap:
    """An ordered list of classes plus what happens to label values no class lists."""

    classes: tuple[ClassInfo, ...]
    unmapped: str = "ignore"
    _lookup: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise InputError("class map: give at least two classes (background and one more)")
        if len(self.classes) > 255:
            raise InputError("class map: at most 255 classes (255 means ignore)")
        if self.unmapped not in UNMAPPED_CHOICES:
            raise InputError(
                f"class map: unmapped must be 'ignore' or 'background', not {self.unmapped!r}"
            )
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise InputError(f"class map: class names must be unique, got {names}")
        _check_boundaries(self.classes, "class map")
        for c in self.classes:
            for v in c.values:
                if v in self._lookup and self._lookup[v] != c.id:
                    raise InputError(f"class map: value {v!r} is listed in two classes")
                self._lookup[v] = c.id

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def boundary(self) -> ClassInfo | None:
        """The boundary class, if the map has one."""
        return boundary_class(self.classes)

    @property
    def unmapped_id(self) -> int:
        return IGNORE if self.unmapped == "ignore" else 0

    def class_id(self, value: Any) -> int | None:
        """Class id of a label value, or None when no class lists it."""
        key = value_key(value)
        return None if key is None else self._lookup.get(key)

    def map_values(self, values: Iterable[Any]) -> tuple[np.ndarray, list[str]]:
        """Class ids (uint8) for label values, and the sorted distinct values no class lists."""
        ids, missing = [], set()
        for v in values:
            cid = self.class_id(v)
            if cid is None:
                key = value_key(v)
                missing.add("<missing>" if key is None else key)
                cid = self.unmapped_id
            ids.append(cid)
        return np.asarray(ids, dtype=np.uint8), sorted(missing, key=value_order)

    def listed_values(self) -> list[str]:
        """The label values the classes list, as a reader orders them."""
        return sorted(self._lookup, key=value_order)

    def case_misses(self, missing: Iterable[str]) -> list[str]:
        """For label values no class lists, the class values they equal but for case:
        "Corn is not corn" (values match exactly)."""
        by_lower: dict[str, list[str]] = {}
        for key in self._lookup:
            by_lower.setdefault(key.lower(), []).append(key)
        return [
            f"{value} is not {' or '.join(by_lower[value.lower()])}"
            for value in missing
            if value.lower() in by_lower
        ]

    def map_array(self, codes: np.ndarray) -> tuple[np.ndarray, set[str]]:
        """Class ids (uint8) for an array of raster codes, and the set of codes no class lists."""
        uniques, inverse = np.unique(codes, return_inverse=True)
        ids, missing = self.map_values(uniques.tolist())
        return ids[inverse].reshape(codes.shape), set(missing)

    def with_codes_as_ids(self) -> ClassMap:
        """For label rasters: where no class lists `values`, this map with each class taking its
        own id (raster code N is class N); else this map."""
        if any(c.values for c in self.classes):
            return self
        return ClassMap(
            tuple(dataclasses.replace(c, values=(str(c.id),)) for c in self.classes),
            self.unmapped,
        )

    def with_unmapped(self, unmapped: str | None) -> ClassMap:
        """This map with `unmapped` replaced (None keeps the file's setting)."""
        if unmapped is None or unmapped == self.unmapped:
            return self
        return ClassMap(self.classes, unmapped)

    def to_list(self) -> list[dict[str, Any]]:
        """The project-wide class list: [{"id", "name", "color"}, ...]."""
        return [c.to_dict() for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this map (values included); canonical for hashing."""
        classes = [
            {**d, "values": list(c.values)}
            for d, c in zip(self.to_list(), self.classes, strict=True)
        ]
        return {"unmapped": self.unmapped, "classes": classes}

    @classmethod
    def from_dict(cls, data: Any, source: str = "class map") -> ClassMap:
        """Build from the parsed file content: a list of classes or {"classes": [...], ...}."""
        unmapped = "ignore"
        if isinstance(data, dict):
            unknown = set(data) - {"classes", "unmapped"}
            if unknown or "classes" not in data:
                found = ", ".join(repr(str(k)) for k in data) or "no key"
                raise InputError(
                    f"{source}: expected keys 'classes' and optional 'unmapped', found {found}"
                )
            unmapped = str(data.get("unmapped", "ignore"))
            data = data["classes"]
        if not isinstance(data, list):
            raise InputError(f"{source}: expected a list of classes with name, values, color")
        classes = [_parse_class(i, item, source) for i, item in enumerate(data)]
        try:
            return cls(tuple(classes), unmapped)
        except InputError as err:
            raise InputError(f"{source}: {str(err).removeprefix('class map: ')}") from None

    @classmethod
    def load(cls, path: str | Path) -> ClassMap:
        """Read a JSON or YAML class map file."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{path}: class map file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            line = err.object[: err.start].count(b"\n") + 1
            raise InputError(f"{path}: not UTF-8 text (line {line}); save it as UTF-8") from None
        try:
            data = yaml.load(text, Loader=_NoAliasLoader)  # YAML is a superset of JSON
        except yaml.YAMLError as err:
            if ALIAS_REFUSAL in str(err):
                raise InputError(f"{path}: {ALIAS_REFUSAL}") from None
            problem = _yaml_problem(err, text)
            raise InputError(f"{path}: not valid JSON or YAML ({problem})") from None
        return cls.from_dict(data, source=str(path))


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """Where and what the YAML parser found wrong, and, where an unquoted colour follows a key,
    that its `#` starts a comment (`color: #e31a1c` in a flow mapping cuts it short)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or err.__class__.__name__
    where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
    hint = ""
    if re.search(r":[ \t]+#[0-9A-Fa-f]{3,8}\b", text):  # a colour, not a comment
        hint = "; an unquoted # starts a comment: quote colours (color: '#e31a1c')"
    return f"{where}{problem}{hint}"


def _parse_class(position: int, item: Any, source: str) -> ClassInfo:
    if not isinstance(item, dict) or "name" not in item:
        raise InputError(f"{source}: class {position} must be a mapping with at least a name")
    if item["name"] is None or not str(item["name"]).strip():
        raise InputError(
            f"{source}: class {position} has an empty name; name it (the name is its legend "
            "entry in QGIS, the quick-look and the metrics)"
        )
    unknown = set(item) - {"id", "name", "values", "color", "boundary"}
    if unknown:
        raise InputError(f"{source}: class {item['name']!r} has unknown keys {sorted(unknown)}")
    if "id" in item and item["id"] != position:
        raise InputError(
            f"{source}: class {item['name']!r} has id {item['id']} but is at position {position}"
            " (ids are list positions, background first)"
        )
    values = item.get("values") or []
    if not isinstance(values, list):
        values = [values]
    keys = tuple(k for k in (value_key(v) for v in values) if k is not None)
    color = _color(item, position, source)
    width = _boundary_width(item, source)
    return ClassInfo(position, str(item["name"]), color.lower(), keys, width)


def load_class_map(
    class_map: str | Path | ClassMap | list[Any] | dict[str, Any],
) -> ClassMap:
    """A ClassMap from a file path, an already built map, or parsed content."""
    if isinstance(class_map, ClassMap):
        return class_map
    if isinstance(class_map, list | dict):
        return ClassMap.from_dict(class_map)
    return ClassMap.load(class_map)


class _NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """The safe loader without anchors and aliases (nested aliases can expand a small file
    into gigabytes, "billion laughs", and a class map never needs them), reading plain values
    as YAML 1.2 does: only true and false are booleans, so a label value `yes`, `no`, `on` or
    `off` stays that text, and only decimal or 0x numbers are integers, so a code `010` is 10,
    not octal 8, and `1:30` is text, not sexagesimal 90."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, ALIAS_REFUSAL, event.start_mark)
        return super().compose_node(parent, index)


_BOOL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"
_NoAliasLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_NoAliasLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_NoAliasLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
