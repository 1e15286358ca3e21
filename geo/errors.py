"""Errors caused by user input: the CLI prints their message as one line and exits non-zero."""

from __future__ import annotations

import errno

FULL_DISK = ("No space left", "database or disk is full")  # OS and GDAL; SQLite (GeoPackage)
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the disk, a quota, a file size limit


class InputError(ValueError):
    """A user input (path, raster, label file, parameter) is unusable; the message says why."""


class UnreadableError(InputError):
    """A file is not a raster GDAL can read, or a read from it failed (corrupt or truncated):
    perhaps it is still being written (ingest waits for such a file when it changed lately).
    `problem` is the message without its `advice` (what to do about a file that stays so)."""

    def __init__(self, problem: str, advice: str = "") -> None:
        super().__init__(f"{problem}; {advice}" if advice else problem)
        self.problem, self.advice = problem, advice

    def __reduce__(self) -> tuple[type[UnreadableError], tuple[str, str]]:
        return type(self), (self.problem, self.advice)  # as sent to and from Dask workers


class NothingToPredictError(InputError):
    """A scene holds nothing to predict: no valid pixel (all no data, or all cloud where a cloud
    mask is its mask), or none in the area of interest. Ingest records such a scene without
    failing the run."""


class OutsideAreaError(NothingToPredictError):
    """A scene lies outside the area of interest (`--aoi`): nothing of it is to be predicted."""


class PassingError(InputError):
    """One line for the user, though the inputs are fine: a later run may succeed (ingest
    retries the scene instead of refusing it until it changes)."""


class NoSpaceError(PassingError):
    """The disk filled up while writing an output; nothing partial is left behind."""


class OutputBusyError(PassingError):
    """Another run is writing the same output now."""


class UnreachableError(PassingError):
    """A service the run needs (object storage, the Prefect API) does not answer: nothing is
    wrong with the input, and a later run may succeed (exit status 1, as for a STAC API)."""


def is_no_space(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, means the disk is full (or a disk
    quota, or the file size limit `ulimit -f`, is reached: the same remedy)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if getattr(current, "errno", None) in FULL or any(m in text for m in FULL_DISK):
            return True
        current = current.__cause__ or current.__context__
    return False
