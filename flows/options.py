"""Command-line options and Prefect flow parameters, derived from the stage configs.

An `Options` is the union of the fields of one or more stage configs, by parameter name. It
gives a flow its signature (so a deployment's parameters are flat: `-p steps=200`) and its
docstring (the help text, shown in Prefect's UI), gives a CLI command its arguments (names,
types, defaults, help), and turns received values back into validated configs. An option exists
once, in its config; nothing here declares one.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic.fields import FieldInfo

from flows.logs import PARAMETER_WORDS, as_parameters, in_deployment_run, input_error_types
from geo.options import StageConfig, choices_of, cli_meta, flag, is_union, list_item

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=StageConfig)


@dataclass(frozen=True)
class Option:
    """One parameter: the config fields it feeds (usually one) and the first of them."""

    name: str
    config: type[StageConfig]
    field: str
    help_text: str | None = None  # this command's own help, else the config field's

    @property
    def info(self) -> FieldInfo:
        return self.config.model_fields[self.field]

    @property
    def help(self) -> str:
        return self.help_text or self.info.description or ""

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def default(self) -> Any:
        return None if self.required else self.info.default

    @property
    def choices(self) -> list[str] | None:
        return choices_of(self.config, self.field)

    @property
    def meta(self) -> dict[str, Any]:
        return cli_meta(self.config, self.field)


@dataclass(frozen=True)
class Options:
    """The options of one command and its flow: config fields by parameter name.

    `shared` maps (config, field) to the name of a parameter it takes its value from instead of
    its own (the `finetune` flow's `store` is both the tile store to write and to train on);
    `helps` gives options a help text of this command's own.
    """

    configs: tuple[type[StageConfig], ...]
    shared: Mapping[tuple[type[StageConfig], str], str] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    as_flags: frozenset[str] = frozenset()  # positional in their config, `--flags` here
    helps: Mapping[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Option]:
        seen: set[str] = set()
        for config in self.configs:
            for name in config.model_fields:
                if (config, name) in self.shared or name in self.skip or name in seen:
                    continue
                seen.add(name)
                yield Option(name, config, name, self.helps.get(name))

    @property
    def names(self) -> list[str]:
        return [o.name for o in self]

    def build(self, config: type[C], values: Mapping[str, Any]) -> C:
        """The `config` of these option values (InputError naming the first bad one)."""
        picked = {
            name: values[self.shared.get((config, name), name)]
            for name in config.model_fields
            if self.shared.get((config, name), name) in values
        }
        renamed = {name: option for (c, name), option in self.shared.items() if c is config}
        return config.parse(picked, renamed)

    # ------------------------------------------------------------------------- Prefect
    def signature(self) -> inspect.Signature:
        """Keyword-only parameters with the configs' types, constraints and defaults."""
        parameters = [
            inspect.Parameter(
                o.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if o.required else o.default,
                annotation=_flow_type(o),
            )
            for o in self
        ]
        return inspect.Signature(parameters)

    def docstring(self, summary: str) -> str:
        """`summary` plus an Args section with every option's help (Prefect shows it)."""
        lines = [summary.strip(), "", "Args:"]
        lines += [f"    {o.name}: {' '.join(o.help.split())}" for o in self]
        return "\n".join(lines) + "\n"

    def parameter_words(self) -> dict[str, str]:
        """What a deployment calls each flag: `--tile-size` -> `tile_size`, `--no-augment` ->
        `augment=false`."""
        words: dict[str, str] = {}
        for o in self:
            if _cli_kind(o) == "bool":
                words |= {flag(o.name): f"{o.name}=true", flag("no_" + o.name): f"{o.name}=false"}
                continue
            words |= dict.fromkeys([flag(o.name), *o.meta.get("aliases", [])], o.name)
        return words

    def parameters(self, summary: str) -> Callable[[F], F]:
        """Decorate a `def flow(**params)` (under `@flow`) with these options as parameters; in
        a deployment run, its messages (logs, artifacts, the error it fails with) name them as
        parameters instead of flags."""

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            def run(**params: Any) -> Any:
                if not in_deployment_run():
                    return fn(**params)
                words = self.parameter_words()
                token = PARAMETER_WORDS.set(words)
                try:
                    return fn(**params)
                except Exception as exc:  # the line the run fails with names parameters too
                    if isinstance(exc, (*input_error_types(), ConnectionError)):
                        exc.args = (as_parameters(str(exc), words),)
                    raise
                finally:
                    PARAMETER_WORDS.reset(token)

            run.__signature__ = self.signature()  # type: ignore[attr-defined]
            run.__doc__ = self.docstring(summary)
            return run  # type: ignore[return-value]

        return decorate

    # ------------------------------------------------------------------------- CLI
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One argument per option: positional or `--flag`, typed, with its default shown."""
        for o in self:
            meta = o.meta
            positional = bool(meta.get("positional")) and o.name not in self.as_flags
            kwargs: dict[str, Any] = {"help": _help(o, positional)}
            kind = _cli_kind(o)
            if kind == "bool":
                kwargs |= {"action": argparse.BooleanOptionalAction, "default": o.default}
            else:
                kwargs |= _typed(kind)
                if kind == "strings":
                    kwargs["nargs"] = "+"
                if o.choices is not None:
                    kwargs["choices"] = o.choices
                if meta.get("metavar"):
                    kwargs["metavar"] = meta["metavar"]
            if positional:
                if not o.required:
                    kwargs |= {"nargs": "?", "default": o.default}
                parser.add_argument(o.name, **kwargs)
                continue
            if kind != "bool":
                kwargs["default"] = o.default
                kwargs["required"] = o.required
            parser.add_argument(flag(o.name), *meta.get("aliases", []), dest=o.name, **kwargs)

    def values(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """The option values from parsed arguments."""
        return {name: getattr(namespace, name) for name in self.names}


def _help(option: Option, positional: bool) -> str:
    text = " ".join(option.help.split())
    if _cli_kind(option) == "bool":  # the side that holds when neither flag is given
        if isinstance(option.default, bool) and "default" not in text:
            text += f" (default: {flag(option.name if option.default else 'no_' + option.name)})"
    elif option.default not in (None, "") and "default" not in text:
        shown = option.default
        if isinstance(shown, list):
            shown = ",".join(map(str, shown))
        text += f" (default: {shown})"
    if option.required and not positional:
        text += " (required)"
    return text.replace("%", "%%")


def _cli_kind(option: Option) -> str:
    """How the command line reads an option: bool, int, float, str, ints, floats, strings,
    weights (auto or numbers)."""
    annotation = option.info.annotation
    args = set(typing.get_args(annotation)) - {type(None)} if is_union(annotation) else set()
    base = next(iter(args)) if len(args) == 1 else annotation
    if len(args) > 1:
        return "weights"
    if base is bool:
        return "bool"
    origin = typing.get_origin(base)
    if origin is list:
        item = typing.get_args(base)[0]
        return {int: "ints", float: "floats"}.get(item, "strings")
    return {int: "int", float: "float"}.get(base, "str")  # type: ignore[arg-type]


def _typed(kind: str) -> dict[str, Any]:
    parsers: dict[str, Callable[[str], Any]] = {
        "int": int, "float": float, "str": str, "strings": str,
        "ints": number_list(int), "floats": number_list(float), "weights": auto_or_numbers,
    }  # fmt: skip
    return {"type": parsers[kind]}


def number_list(kind: type[int] | type[float]) -> Callable[[str], list[Any]]:
    """Parse "4,3,2" into numbers; anything else is one clear argparse error."""
    word = "integers" if kind is int else "numbers"

    def parse(text: str) -> list[Any]:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {word} like 4,3,2, got {text!r}"
            ) from None

    parse.__name__ = f"{word} list"
    return parse


def auto_or_numbers(text: str) -> str | list[float]:
    """`auto` (any case), or comma-separated numbers."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return number_list(float)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected auto or one number per class like 1,2.5,4, got {text!r}"
        ) from None


def _flow_type(option: Option) -> Any:
    """The parameter's type for Prefect: the field's, with its choices as a Literal and its
    constraints (ge, lt, at least one item, ...) kept, so the UI shows a form and runs validate
    before work (`-p 'images=[]'` is refused when the run is created); a list also takes one
    string (`-p images=/data/*.tif`, `-p bands=4,3,2`: `one_value_as_list`)."""
    annotation: Any = option.info.annotation
    if list_item(annotation) is not None:  # constraints (at least one item) on the list itself
        metadata = option.info.metadata
        return (Annotated[annotation, *metadata] if metadata else annotation) | str
    if option.choices is not None:
        literal = Literal.__getitem__(tuple(option.choices))
        annotation = Optional[literal] if option.default is None else literal  # noqa: UP045
    if option.info.metadata:
        return Annotated[annotation, *option.info.metadata]
    return annotation
