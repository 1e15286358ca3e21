"""The query of a STAC search: `eo:cloud_cover<20`, `platform=sentinel-2b`; sent to an API as
CQL2 or a `query` object and checked again here."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geo.errors import InputError
from geo.options import flag

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
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")  # a date or datetime, which orders as text


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
                f"{flag('query')} {part!r}: write PROPERTY OP VALUE, e.g. eo:cloud_cover<20 "
                "(operators < <= > >= = !=; join several with ',')"
            )
        prop, op, raw = match.groups()
        value = _value(raw.strip())
        if op in ("<", "<=", ">", ">=") and isinstance(value, str) and not _DATE.match(value):
            raise InputError(
                f"{flag('query')} {part!r}: {op} compares numbers or dates, not {value!r} (a "
                "number such as eo:cloud_cover<20, without a unit or a second operator)"
            )
        conditions.append(Condition(prop, "=" if op == "==" else op, value))
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
