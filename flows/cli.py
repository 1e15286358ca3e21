"""`convlora-geo`: the command line. Each subcommand lives in `flows/commands/<name>.py`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from flows.local_server import cancel_interrupted_run, start_early
from flows.logs import forward_library_logs, input_error_types

if TYPE_CHECKING:
    import psutil

COMMANDS = (
    "demo", "tile", "train", "evaluate", "finetune", "predict", "vectorize", "ingest", "info",
)  # fmt: skip
FLOW_COMMANDS = ("demo", "tile", "finetune", "predict", "ingest")  # the ones that run flows
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # one format for every process
OUT_OF_MEMORY = (
    "out of memory; lower --batch-size (or --tile-size / --image-size) and run the same "
    "command again"
)
CPU_ALLOCATOR_FAILED = "DefaultCPUAllocator: can't allocate memory"  # torch's RuntimeError
NOISY_LOGGERS = (
    "httpx", "httpcore", "distributed", "asyncio", "rasterio", "fsspec", "pyogrio", "botocore",
    "aiobotocore", "s3fs", "websockets", "urllib3", "graphviz", "PIL",
)  # fmt: skip


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (and status 2), like every other
    input error, instead of the usage text plus the error."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


class VersionAction(argparse.Action):
    """`--version`: convlora-geo's version and those of what shapes its outputs (the list a
    prediction manifest records), for bug reports; loads torch only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from geo.io.provenance import software_versions

        versions = software_versions()
        own = versions.pop("convlora-geo")
        print(f"convlora-geo {own} ({', '.join(f'{k} {v}' for k, v in versions.items())})")
        parser.exit()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wide enough for the option names and their help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=100)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug (no traceback is shown for them)."""
    return (UserError, *input_error_types())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="convlora-geo",
        description="Fine-tune SAM with Conv-LoRA on GeoTIFFs and predict GIS-ready outputs.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--version", action=VersionAction, help="the versions of convlora-geo, torch, GDAL, ..."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"flows.commands.{name}").add_parser(sub)
    for command in sub.choices.values():  # `convlora-geo train ... -v` too, as users type it
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
            help="debug logging (default: off)",
        )  # fmt: skip
    return parser


def runs_flows(words: Sequence[str]) -> bool:
    """Whether a command line names a command that runs Prefect flows (and asks for no help)."""
    command = next((word for word in words if not word.startswith("-")), None)
    return command in FLOW_COMMANDS and not {"-h", "--help"} & set(words)


def error(command: str, message: str, status: int = 2) -> int:
    """Print `message` as one line (whatever the library wrote) and return `status` (2: bad
    input)."""
    print(f"convlora-geo {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def printable_anywhere() -> None:
    """A terminal that cannot show a character (class names such as `blé` or `пшеница` under an
    ASCII or cp1252 locale) gets an escape for it (`bl\\xe9`), not an error after the work."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    printable_anywhere()
    # said in one line by `prefect_api` where a flow would need the folder
    warnings.filterwarnings("ignore", message="Failed to create the Prefect home directory")
    if argv is None and runs_flows(sys.argv[1:]):  # this process's own command line
        start_early()  # before the parser is built (about a second on a 2-core machine)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or one line about a bad argument
        return int(exc.code or 0)
    if args.command is None:  # `convlora-geo` alone: the commands, as --help lists them
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S"
    )
    for key in ("FORMAT", "FLOW_RUN_FMT", "TASK_RUN_FMT"):  # Prefect's, in a local Dask worker
        os.environ.setdefault(f"PREFECT_LOGGING_FORMATTERS_STANDARD_{key}", LOG_FORMAT)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGINT, stop_now(args.command))
    restore_sigterm = stop_on_sigterm()
    forward_library_logs(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.run(args) or 0)
    except user_error_types() as exc:
        from geo.errors import UnreachableError

        return error(args.command, str(exc), status=1 if isinstance(exc, UnreachableError) else 2)
    except KeyboardInterrupt:
        print(f"convlora-geo {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        quiet_broken_pipe()
        return 0
    except ConnectionError as exc:  # a service that did not answer: not the input's fault
        return error(args.command, f"{exc}; a later run may succeed", status=1)
    except Exception as exc:
        from geo.errors import is_no_space

        memory = out_of_memory(exc)
        if memory:
            return error(args.command, memory)
        if not is_no_space(exc):
            raise
        return error(args.command, f"no space left on device ({exc}); free some space")
    finally:
        signal.signal(signal.SIGINT, previous)
        restore_sigterm()


def out_of_memory(exc: BaseException) -> str | None:
    """The line for an exception that means memory ran out (None for any other): Python's and
    NumPy's MemoryError, torch's CPU allocator failing (a RuntimeError), and CUDA's
    OutOfMemoryError."""
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(exc, RuntimeError) and CPU_ALLOCATOR_FAILED in str(exc):
        return OUT_OF_MEMORY
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return f"GPU {OUT_OF_MEMORY}"
    return None


WRITES_AT_ONCE = frozenset({"vectorize", "evaluate", "info"})  # nothing to resume after Ctrl-C


def stop_on_sigterm() -> Callable[[], None]:
    """SIGTERM (`timeout`, `docker stop`, Kubernetes, systemd) stops a command as Ctrl-C does
    (`stop_now`), with status 143. Prefect's flow engine puts its own SIGTERM handler in place
    while a flow runs, which waits for the task at work (a whole scene's prediction) and then
    for a temporary server that is gone (minutes, and a traceback); so the signal is read from
    Python's wakeup file by a thread of its own, which hands it to the main thread as SIGINT.
    Only the command line does this: a deployment run's SIGTERM is Prefect's cancel. Returns
    the function that puts back what was there before."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # noted by the file

    def watch() -> None:
        with os.fdopen(read, "rb", buffering=0) as signals:
            while data := signals.read(64):  # until `restore` closes the other end
                if signal.SIGTERM in data:
                    _TERMINATED.append(signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGINT)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        signal.set_wakeup_fd(wakeup)
        os.close(write)

    threading.Thread(target=watch, name="sigterm", daemon=True).start()
    return restore


_TERMINATED: list[int] = []  # SIGTERM, once it came: the stop that SIGINT carries is its


def stop_now(command: str) -> Callable[[int, FrameType | None], None]:
    """A SIGINT handler that stops at once: Ctrl-C reaches the whole process group, Prefect's
    temporary server included, and a flow would otherwise retry that dead server for minutes.
    Work already done stays resumable (tiling, training and prediction all resume from their
    last checkpoint when the same command runs again); a file half written that nothing would
    resume (`geo.io.outputs.WRITING`: vectorize's) is removed. Exits 130, or 143 for SIGTERM
    (`stop_on_sigterm`)."""
    stopping: list[bool] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopping:  # a second signal while stopping: the first one finishes
            return
        stopping.append(True)
        # written, not printed: a flow with log_prints turns print() into a log record
        then = "run the same command again to resume"
        if command in WRITES_AT_ONCE:
            then = "nothing was written"
        how, status = ("terminated (SIGTERM)", 143) if _TERMINATED else ("interrupted", 130)
        sys.stderr.write(f"convlora-geo {command}: {how}; {then}\n")
        sys.stderr.flush()
        import psutil

        from geo.io.outputs import WRITING

        for temporary in list(WRITING):  # a file half written, which nothing would resume
            temporary.unlink(missing_ok=True)

        # the children stop on purpose: a local Dask cluster's nanny would announce restarts
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        stop_local_dask_restarts()
        stopped: set[int] = set()
        for _ in range(2):  # again for a worker a nanny restarted before it was told to stop
            children = psutil.Process().children(recursive=True)
            children = [child for child in children if child.pid not in stopped]
            stopped.update(child.pid for child in children)
            stop_children(children)
        cause = how if _TERMINATED else "interrupted (Ctrl-C)"
        cancel_interrupted_run(f"{cause} on the command line; {then}")
        os._exit(status)

    return handler


def stop_children(children: list[psutil.Process]) -> None:
    """SIGTERM to each of `children`, then SIGKILL to those still alive 3 s later."""
    import psutil

    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def stop_local_dask_restarts() -> None:
    """Tell this process's Dask nannies (a local cluster's) that their workers stop for good: a
    nanny restarts a worker whose process ends, and one started while the command stops would
    outlive it and print heartbeat tracebacks to the terminal."""
    module = sys.modules.get("distributed.nanny")  # imported only where a cluster may run
    nannies = getattr(getattr(module, "Nanny", None), "_instances", ())  # Dask's own registry
    for nanny in list(nannies):
        nanny.close_gracefully(reason="interrupted")


def quiet_broken_pipe() -> None:
    """Output piped into a reader that closed early (`| head`): stop printing, say nothing
    (stdout is pointed at /dev/null so that the interpreter's final flush stays quiet)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
