"""CLI subcommands: each module registers one parser and runs the matching library call or flow."""

from __future__ import annotations

import argparse

from flows.cli import HelpFormatter
from flows.options import Options


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    options: Options | None,
    *,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand parser with the options' arguments (and `--help` showing their defaults)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or help, formatter_class=HelpFormatter
    )
    if options is not None:
        options.add_arguments(parser)
    return parser
