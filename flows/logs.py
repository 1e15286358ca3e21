"""The library's logs (`geo.*`, `convlora.*`, `flows.*`) in the logs of the Prefect flow run.

Prefect sends only its own loggers to the API unless `PREFECT_LOGGING_EXTRA_LOGGERS` names
others, and it reads that setting once, when it configures logging: in a deployment run that is
before any of this project's code is imported (the worker's flow-run process, Dask workers), so
setting it from here is too late. Instead, importing `flows` (which every process that runs one
of these flows or tasks does) attaches `RunLogHandler` to the library's loggers. It hands a
record to Prefect's API handler only inside a flow or task run, so the same code logs quietly
outside Prefect (the `train` command, tests), and it imports nothing from Prefect until then.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

LIBRARY_LOGGERS = ("geo", "convlora", "flows")
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # where Prefect logs a run's failure
ENGINE_EXIT = "Engine execution exited with unexpected exception"  # Prefect's flow_engine.run_flow
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

# In a deployment run, what its parameters call the flags messages name (`--tile-size` ->
# `tile_size`): set by the flow (`Options.parameters`), read wherever its logs are written.
PARAMETER_WORDS: ContextVar[Mapping[str, str] | None] = ContextVar("parameter_words", default=None)


def as_parameters(text: str, words: Mapping[str, str] | None = None) -> str:
    """`text` with each flag it names as the deployment's parameter (`words`, else this run's:
    unchanged outside a deployment run): a user of a deployment passes `-p tile_size=256`, not
    `--tile-size 256`. Flags no parameter matches stay as they are."""
    words = PARAMETER_WORDS.get() if words is None else words
    if not words:
        return text
    return FLAG.sub(lambda m: words.get(m.group(), m.group()), text)


def in_deployment_run() -> bool:
    """Whether this is a flow run of a deployment (`prefect deployment run`, a schedule)."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return run is not None and run.deployment_id is not None


class RunLogHandler(logging.Handler):
    """Sends records logged inside a Prefect flow or task run to the Prefect API (Prefect's own
    `APILogHandler`, which batches them); drops records logged outside any run."""

    def __init__(self) -> None:
        super().__init__()
        self._api: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        if "prefect.context" not in sys.modules:  # Prefect not even loaded: no run here
            return
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        if self._api is None:
            from prefect.logging.handlers import APILogHandler

            self._api = APILogHandler()
        if PARAMETER_WORDS.get():  # a copy: the terminal's handlers get the record as logged
            record = logging.makeLogRecord(
                {**record.__dict__, "msg": as_parameters(record.getMessage()), "args": None}
            )
        self._api.handle(record)


def input_error_types() -> tuple[type[Exception], ...]:
    """The library's exceptions for bad input (imported when first needed)."""
    from convlora.errors import ConvLoRAInputError
    from geo.errors import InputError

    return InputError, ConvLoRAInputError


class BadInputWithoutTraceback(logging.Filter):
    """Drops the traceback from Prefect's record of a run that failed on bad input, or on a
    service that did not answer (a STAC API, a store: its message keeps the error line, as the
    CLI's does): found mid-way, each is one line, as it is before a run starts. Prefect's later
    `ENGINE_EXIT` record of the same exception in a deployment run goes altogether."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(
            record.exc_info[1], (*input_error_types(), ConnectionError)
        ):
            if record.msg == ENGINE_EXIT:  # the run's failure line has said it
                return False
            record.exc_info, record.exc_text = None, None
        return True


def forward_library_logs(level: int = logging.INFO) -> None:
    """Attach one `RunLogHandler` to each library logger and let `level` through them, and
    `BadInputWithoutTraceback` to Prefect's run loggers."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler())
        logger.setLevel(level)
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, BadInputWithoutTraceback) for f in logger.filters):
            logger.addFilter(BadInputWithoutTraceback())
