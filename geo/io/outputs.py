"""Output locations: checked before any work starts, cleaned up when a run fails on bad input."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import resource
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from geo.errors import InputError, NoSpaceError, OutputBusyError, is_no_space
from geo.io.raster import open_raster

log = logging.getLogger(__name__)


def check_output(path: str | Path, *, into: bool, option: str | None = "--out") -> Path:
    """`path` made absolute; InputError unless the run can write there, naming `option` (None:
    the path alone, for a path that more than one option can give).

    `into`: outputs go inside `path` (a folder, created if missing); otherwise `path` is
    written beside itself (under a temporary name in its parent, then renamed).
    """
    out = Path(path).expanduser().absolute()
    named = f"{option} {path}" if option else str(path)
    if into and out.exists() and not out.is_dir():
        raise InputError(f"{named}: exists and is not a folder")
    nearest = out if into else out.parent
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise InputError(f"{named}: {nearest} is a file, not a folder")
    problem = _unwritable(nearest)
    if problem:
        elsewhere = f"choose another {option}" if option else "write elsewhere"
        raise InputError(
            f"{named}: {nearest} is not writable ({problem}; {elsewhere} or fix its permissions)"
        )
    return out


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None: found by creating one and removing it
    (the folder's times put back, so nothing there looks changed), as permissions do not tell
    everything (root may write anywhere they say, but not in /proc, on a read-only mount or some
    network mounts)."""
    try:
        before = folder.stat()
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".convlora-geo-probe-"):
            pass
        os.utime(folder, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def make_folder(folder: Path) -> Path:
    """`folder` and its parents created; InputError naming it where the system refuses (the
    checks before the work go by permissions, which do not tell everything: /proc, some
    network mounts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_no_space(exc):
            raise
        raise InputError(f"{folder}: cannot be created ({exc.strerror or exc})") from None
    return folder


WRITING: set[Path] = set()
"""Files being written under a temporary name (`writing`): Ctrl-C, which stops the command at
once (`flows.cli.stop_now`), removes them."""


@contextmanager
def writing(temporary: Path) -> Iterator[Path]:
    """Around writing `temporary`, a file renamed into place when complete: removed when the
    work fails or is interrupted, so no half-written file stays behind."""
    WRITING.add(temporary)
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        WRITING.discard(temporary)


FREE_SLACK = 1024 * 1024  # a disk with less free room than this is full


def out_of_room(path: Path) -> bool:
    """Whether a write into `path` that failed likely did so for want of room, which SQLite
    (GeoPackages) reports without an error number ("disk I/O error", "Failed to commit
    transaction") and after rolling the file back to its earlier size: a file size limit
    (`ulimit -f`) is set, or the disk is nearly full."""
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return True
    try:
        return shutil.disk_usage(path.parent).free < FREE_SLACK
    except OSError:
        return False


@contextmanager
def discard_on_failure(temporary: Path, target: Path) -> Iterator[None]:
    """Around work written into `temporary` for `target`: when it fails on bad input or a full
    disk (rerunning cannot resume those), remove `temporary`, and turn a full disk into
    NoSpaceError; on any other failure keep it, so that the next run resumes."""
    try:
        yield
    except Exception as exc:
        if not (isinstance(exc, InputError) or is_no_space(exc)):
            if temporary.exists():
                log.warning(
                    "%s failed: finished work is kept in %s; rerun to resume", target, temporary
                )
            raise
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(exc, InputError):
            raise
        raise NoSpaceError(
            f"{target}: no space left on device (free some space or choose another output "
            "folder; nothing was changed there)"
        ) from exc


def scene_date(path: str) -> str | None:
    """The date a raster records of itself (UTC, ISO 8601 with milliseconds): its TIFF DateTime
    tag, or the STAC item datetime of an ingest VRT; None where it records none. Never the
    file's modification time: the same scene gives the same bytes wherever it lives (a folder,
    a bucket) and however often it was copied."""
    with open_raster(path) as src:
        tags = src.tags()
    for key, parse in _DATE_TAGS:
        with contextlib.suppress(KeyError, ValueError):
            return _iso_utc(parse(tags[key].strip()))
    return None


def date_tags(date: str | None) -> dict[str, str]:
    """The GeoTIFF metadata that records `date` (a `scene_date`) as the TIFF DateTime tag, which
    `scene_date` reads back and GIS tools show; none without a date."""
    if date is None:
        return {}
    stamp = dt.datetime.fromisoformat(date).astimezone(dt.UTC)
    return {"TIFFTAG_DATETIME": stamp.strftime("%Y:%m:%d %H:%M:%S")}


def _iso_utc(stamp: dt.datetime) -> str:
    """`2021-06-17T10:30:00.000Z` (naive times are taken as UTC)."""
    stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


_DATE_TAGS: tuple[tuple[str, Callable[[str], dt.datetime]], ...] = (
    ("TIFFTAG_DATETIME", lambda text: dt.datetime.strptime(text, "%Y:%m:%d %H:%M:%S")),
    ("STAC_ITEM_DATETIME", dt.datetime.fromisoformat),
)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in a file this tool wrote earlier (a manifest, a run's config), or {}
    when it is missing, unreadable or not an object: whoever asks then treats it as not ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _lock(handle: IO[str] | int, mode: int, target: Path, what: str) -> None:
    """Take the lock of `target` without waiting (InputError when another run holds it)."""
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputBusyError(
            f"{target}: another run is writing this {what} now; wait for it to finish"
        ) from None


def check_unlocked(target: Path, what: str) -> None:
    """InputError when another run holds the lock of `target` right now (see `exclusive`);
    creates nothing."""
    try:
        handle = open(_lock_path(target))  # noqa: SIM115 - closed below, the lock with it
    except FileNotFoundError:
        return
    with handle:
        _lock(handle, fcntl.LOCK_SH, target, what)


@contextmanager
def exclusive(target: Path, what: str, *, traceless: bool = False) -> Iterator[None]:
    """Hold a lock on `target` (a hidden `.NAME.lock` file beside it, removed afterwards) while
    writing it: a second run writing the same output at the same time stops with one line
    instead of racing. `traceless`, for work that leaves nothing behind when it fails: a run
    that fails puts the folder's times back, so that the lock file it made and removed leaves
    no trace there either."""
    lock = _lock_path(target)
    if not target.parent.is_dir():  # nothing can hold a lock in a folder still to be made
        make_folder(target.parent)
    before = target.parent.stat()
    with open(lock, "a") as handle:
        _lock(handle, fcntl.LOCK_EX, target, what)
        failed = True
        try:
            yield
            failed = False
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
            if failed and traceless:
                with contextlib.suppress(OSError):
                    os.utime(target.parent, ns=(before.st_atime_ns, before.st_mtime_ns))


def check_folder_unlocked(folder: Path, what: str) -> None:
    """InputError when another run holds the lock of `folder` (see `locked_folder`) now."""
    if not folder.is_dir():
        return
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(handle, fcntl.LOCK_SH, folder, what)
    finally:
        os.close(handle)


@contextmanager
def locked_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold a lock on the folder itself (made if missing) while a run writes into it: a second
    run into it stops with one line. Nothing is written for it, so a run refused inside the
    lock leaves the folder and the one holding it as they were."""
    make_folder(folder)
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(handle, fcntl.LOCK_EX, folder, what)
        yield
    finally:
        os.close(handle)  # releases the lock


def foreign_files(paths: list[Path], ours: set[str], option: str = "--overwrite") -> None:
    """InputError naming the first of `paths` that exists but is not among `ours` (the file
    names this tool recorded as its own), unless the user allowed replacing it with `option`."""
    for path in paths:
        if path.exists() and path.name not in ours:
            raise InputError(
                f"{path}: exists and was not written by convlora-geo; move it away, or pass "
                f"{option} to replace it"
            )
