"""CLI subcommands: each module registers one parser and runs the matching library call or flow."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from flows.cli import UserError

P = TypeVar("P", bound=BaseModel)


def validated(params_type: type[P], /, **values: object) -> P:
    """Build flow parameters, turning the first validation problem into one readable line."""
    try:
        return params_type(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
        message = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: {message}" if where else message) from None


def int_list(text: str) -> list[int]:
    """Parse `4,3,2` into [4, 3, 2]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None
