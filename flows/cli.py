"""`convlora-geo`: the command line. Each subcommand lives in `flows/commands/<name>.py`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMANDS = ("demo", "tile", "train", "evaluate", "finetune", "predict", "ingest", "info")


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug (no traceback is shown for them)."""
    from convlora.errors import ConvLoRAInputError
    from geo.errors import InputError

    return (UserError, InputError, ConvLoRAInputError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlora-geo",
        description="Fine-tune SAM with Conv-LoRA on GeoTIFFs and predict GIS-ready outputs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"flows.commands.{name}").add_parser(sub)
    return parser


def error(command: str, message: str) -> int:
    """Print `message` as one line (whatever the library wrote) and return exit status 2."""
    print(f"convlora-geo {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "distributed", "asyncio", "rasterio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except user_error_types() as exc:
        return error(args.command, str(exc))
    except Exception as exc:
        from geo.errors import is_no_space

        if not is_no_space(exc):
            raise
        return error(args.command, f"no space left on device ({exc}); free some space")
    except KeyboardInterrupt:
        print(f"convlora-geo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
