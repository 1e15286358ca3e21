"""Stage configurations: one frozen, validated object per stage, and the metadata that lets the
CLI and the Prefect flows derive their options from it (names, types, defaults, help).

A field declared with `option(...)` carries its help text, and optionally how the command line
shows it (positional, aliases, metavar) and its allowed values. `StageConfig.parse` turns the
first validation problem into one `InputError` line that names the option as typed on the
command line (`--tile-size 250: must be a positive multiple of 16 ...`).
"""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geo.errors import InputError
from geo.io.grid import tile_size_problem
from geo.io.raster import absolute
from geo.io.storage import expand_pattern, is_url

CLI = "cli"
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ..."
C = TypeVar("C", bound=BaseModel)
R = TypeVar("R")


def option(
    default: Any = ...,
    help: str = "",
    *,
    positional: bool = False,
    aliases: Sequence[str] = (),
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    **constraints: Any,
) -> Any:
    """A config field with its command-line metadata; `constraints` are pydantic's (ge, le...)."""
    extra: dict[str, Any] = {
        CLI: {"positional": positional, "aliases": list(aliases), "metavar": metavar}
    }
    if choices is not None:
        extra["enum"] = list(choices)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def check_device(device: str) -> str:
    """A device name torch knows here (availability is checked before work starts)."""
    if not DEVICE.match(device):
        raise ValueError(f"not a device; choose {DEVICE_HELP}")
    return device


def validates(*fields: str, by: Callable[[Any], Any]) -> Any:
    """A config validator of `fields`: each value becomes `by(value)`, which raises ValueError
    for a bad one (`describe` names the option). Assign it to a class attribute."""
    return field_validator(*fields)(classmethod(lambda _cls, value: by(value)))


def absolute_paths(value: str | list[str] | None) -> str | list[str] | None:
    """Local paths (one, a list, or None) made absolute; URLs and GDAL paths unchanged."""
    if isinstance(value, list):
        return [absolute(p) for p in value]
    return None if value is None else absolute(value)


def local_path(value: str | None) -> str | None:
    """A path on this machine's file system, made absolute; ValueError for a URL (a Path would
    turn `s3://b/x` into a local folder `s3:/b/x`)."""
    if value is not None and is_url(value):
        raise ValueError(
            "must be a local path: tile stores, training runs and vectorised polygons are "
            "written on disk (predict and ingest write to object storage)"
        )
    return None if value is None else absolute(value)


def expanded_paths(value: list[str] | None) -> list[str] | None:
    """Input files (a list, or None) made absolute, glob patterns expanded
    (`geo.io.storage.expand_pattern`); ValueError naming a pattern that matches nothing."""
    if value is None:
        return None
    files = []
    for given in value:
        try:
            files += expand_pattern(absolute(given))
        except InputError as exc:
            raise ValueError(f"{given}: {exc}") from None
    return files


def distinct_paths(value: list[str] | None) -> list[str] | None:
    """`expanded_paths`, each file once, in the order first given: patterns that overlap
    (`scenes/*.tif scenes/a*.tif`) or a scene listed twice would have one run predict it twice,
    racing itself for its outputs."""
    files = expanded_paths(value)
    return None if files is None else list(dict.fromkeys(files))


def pixel_size(size: int | None) -> int | None:
    """A tile or image size in pixels (None: the default), or ValueError."""
    problem = None if size is None else tile_size_problem(size)
    if problem:
        raise ValueError(problem)
    return size


def flag(name: str) -> str:
    """How an option is typed on the command line: `tile_size` -> `--tile-size`."""
    return "--" + name.replace("_", "-")


def changed_options(
    old: Mapping[str, Any], new: Mapping[str, Any], named: Mapping[str, str]
) -> list[str]:
    """The settings that differ between two records, as typed (`--overlap 32, now 16`); a
    setting that is no option is said by its phrase in `named` (`the class map differs`)."""
    differences = []
    for key in sorted(set(old) | set(new)):
        before, now = old.get(key), new.get(key)
        if before == now:
            continue
        if key in named:
            differences.append(f"{named[key]} differs")
        else:
            differences.append(f"{flag(key)} {_as_typed(before)}, now {_as_typed(now)}")
    return differences


def _as_typed(value: Any) -> str:
    """A setting as the command line writes it: lists comma-separated, None as `none`."""
    if isinstance(value, list | tuple):
        return ",".join(map(_as_typed, value))
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def choices_of(config: type[BaseModel], name: str) -> list[str] | None:
    """The allowed values of a field declared with `choices`, else None."""
    extra = config.model_fields[name].json_schema_extra
    allowed = extra.get("enum") if isinstance(extra, dict) else None
    return [str(v) for v in allowed] if isinstance(allowed, list) else None


def cli_meta(config: type[BaseModel], name: str) -> dict[str, Any]:
    extra = config.model_fields[name].json_schema_extra
    meta = extra.get(CLI) if isinstance(extra, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def is_union(annotation: Any) -> bool:
    """Whether a field's type is a union (`int | None`, `Optional[...]`)."""
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def list_item(annotation: Any) -> Any:
    """The item type of a list field (`list[int]`, `list[str] | None`, ...), else None."""
    if is_union(annotation):
        items = [list_item(arm) for arm in typing.get_args(annotation)]
        return next((item for item in items if item is not None), None)
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None


def one_value_as_list(annotation: Any, value: Any) -> Any:
    """A list field's value given as one string, as a deployment's `-p` gives it: a path or
    pattern is a list of one (`-p images=/data/2024-*.tif`), numbers are split at commas
    (`-p bands=4,3,2`); a value the field takes as it is (`auto`) and anything else unchanged."""
    item = list_item(annotation)
    if item is None or not isinstance(value, str) or value in literal_values(annotation):
        return value
    return [value] if item is str else [part.strip() for part in value.split(",")]


def literal_values(annotation: Any) -> set[Any]:
    """The values a field's Literal arms allow (`Literal["auto"] | list[float]`: {"auto"})."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    if is_union(annotation):
        return set().union(*(literal_values(arm) for arm in typing.get_args(annotation)))
    return set()


class StageConfig(BaseModel):
    """Base of the stage configs: immutable, unknown options are errors, values validated."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _one_value_as_list(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        fields = cls.model_fields
        return {
            name: one_value_as_list(fields[name].annotation, value) if name in fields else value
            for name, value in values.items()
        }

    @model_validator(mode="after")
    def _check_choices(self) -> Self:
        for name in type(self).model_fields:
            allowed = choices_of(type(self), name)
            value = getattr(self, name)
            if allowed is not None and value is not None and value not in allowed:
                raise ValueError(f"{flag(name)} {value!r}: choose one of {', '.join(allowed)}")
        return self

    @classmethod
    def parse(cls, values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> Self:
        """Build from option values; InputError with one line for the first problem, naming
        the option as the command calls it (`names`: field -> option, where they differ)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise InputError(describe(exc, values, cls, names or {})) from None

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> Self:
        """`parse` the values among `values` that are this config's fields."""
        return cls.parse({k: v for k, v in values.items() if k in cls.model_fields})

    def params(self) -> dict[str, Any]:
        """The options as plain JSON values (what a flow run receives as its parameters)."""
        return self.model_dump(mode="json")


def describe(
    exc: ValidationError,
    values: Mapping[str, Any],
    config: type[BaseModel],
    called: Mapping[str, str],
) -> str:
    """One line for the first validation error: the option as typed (`called` maps a field to
    the option it is called by; a positional one: only its value), its value, the problem."""
    error = exc.errors()[0]
    names = [str(part) for part in error["loc"] if not isinstance(part, int)]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing" and names:
        return f"{flag(names[0])} is required"
    if error["type"] == "extra_forbidden" and names:
        return f"unknown option {names[0]!r}"
    if not names:
        return message
    name = names[0]
    shown = values.get(name, error.get("input"))
    if name in config.model_fields:
        shown = one_value_as_list(config.model_fields[name].annotation, shown)
    if isinstance(shown, list):
        named = [str(v) for v in shown if message.startswith(f"{v}: ")]  # the item at fault
        if named:
            shown, message = named[0], message[len(named[0]) + 2 :]
        else:
            shown = ",".join(str(v) for v in shown)
    if name in config.model_fields and cli_meta(config, name).get("positional"):
        return f"{shown}: {message}"
    return f"{flag(called.get(name, name))} {shown}: {message}"


def checked_once(
    paths_of: Callable[[C], Iterable[str]],
    usable: Callable[[R], bool] = lambda _: True,
) -> Callable[[Callable[[C], R]], Callable[[C], R]]:
    """Memoise a pre-flight check in this process: the CLI checks before it starts a flow and
    the flow runs the same check; the second call returns the first result while the config
    and the files it names (size and modification time) are unchanged, and while `usable`
    says the result still is (a plan whose temporary files were removed once used is not)."""

    def decorate(check: Callable[[C], R]) -> Callable[[C], R]:
        memo: dict[tuple[Any, ...], R] = {}

        @functools.wraps(check)
        def checked(config: C) -> R:
            key = (config.model_dump_json(), *(_stamp(p) for p in paths_of(config)))
            if key not in memo or not usable(memo[key]):
                result = check(config)
                memo.clear()
                memo[key] = result
            return memo[key]

        return checked

    return decorate


def _stamp(path: str) -> tuple[str, int | None, int | None]:
    try:
        st = os.stat(path)
    except OSError:
        return path, None, None
    return path, st.st_size, st.st_mtime_ns
