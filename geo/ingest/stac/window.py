"""Time windows of a STAC search: ISO instants, dates and intervals, durations (P10D), `last 10
days`, resolved at each run."""

from __future__ import annotations

import datetime as dt
import re

from geo.errors import InputError

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
