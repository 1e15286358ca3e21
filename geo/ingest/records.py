"""The ingest record: what each model has predicted from a source, what it refused and what failed.

Entries are keyed by what a source calls a scene: a file's path or URL, or a STAC item's id.
Each has a version: a file's ETag (else size and modification time), an item's `updated` time
(else `created`, else its datetime; see `StacItem.version`). A scene is done for a model when its
(id, version) was predicted by that model, so a changed file or a reprocessed item is predicted
again.

- `skipped`: scenes refused before prediction because the model cannot read them (too few
  bands, no CRS, not a raster, a band map that does not fit the item). They are checked again
  only when they change (their version), or when the settings that refused them do (`settings`,
  e.g. the STAC band map).
- `failed`: scenes whose prediction failed otherwise (a network error, an asset not there yet).
  They are due again on the next run until they succeed (or, with `max_attempts`, until they
  have failed that many times at the same version); `attempts` counts while the version stays.

One JSON file holds the records of every model; `save` re-reads it and replaces only the
entries this run changed, then writes it whole: locally to a temporary file renamed into place
(the folder locked meanwhile, so two runs into one folder each keep the other's entries), to
object storage as one object. An interrupted run leaves the previous record whole.

    {"format": "convlora-geo ingest record", "version": 1,
     "models": {MODEL_ID: {"done":    {ID: {"version": V, "at": T, "outputs": {...},
                                            "settings": {...}}},
                           "skipped": {ID: {"version": V, "at": T, "reason": R,
                                            "settings": S}},
                           "failed":  {ID: {"version": V, "at": T, "reason": R,
                                            "attempts": N}}}}}
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from convlora.files import atomic_write_json
from geo.errors import InputError
from geo.io.storage import is_url, read_text, upload
from geo.options import changed_options

FORMAT = "convlora-geo ingest record"
VERSION = 1
RECORD_FILE = "ingest-record.json"
MAX_REASON = 2000  # characters of a reason kept

T = TypeVar("T")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(reason: str) -> str:
    return (" ".join(str(reason).split()) or "unknown error")[:MAX_REASON]


@dataclass
class IngestRecord:
    """What one model has done with the scenes of a source (a plain data structure)."""

    model: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as loaded

    # --- questions

    def is_done(self, item_id: str, version: str) -> bool:
        entry = self.done.get(item_id)
        return entry is not None and entry.get("version") == version

    def is_skipped(self, item_id: str, version: str, settings: str = "") -> bool:
        """Refused before at this version with these settings (so refused again)."""
        entry = self.skipped.get(item_id)
        return (
            entry is not None
            and entry.get("version") == version
            and entry.get("settings", "") == settings
        )

    def due(
        self,
        items: Iterable[T],
        key: Callable[[T], tuple[str, str]] = lambda i: i.key,  # type: ignore[attr-defined]
        max_attempts: int | None = None,
        settings: str = "",
    ) -> list[T]:
        """The items not done at their version, in the given order: new ones, new versions, and
        earlier failures (unless they failed `max_attempts` times at this version); not those
        refused at this version with these `settings`."""
        out = []
        for item in items:
            item_id, version = key(item)
            if self.is_done(item_id, version) or self.is_skipped(item_id, version, settings):
                continue
            failure = self.failed.get(item_id)
            if (
                max_attempts is not None
                and failure is not None
                and failure.get("version") == version
                and int(failure.get("attempts", 0)) >= max_attempts
            ):
                continue
            out.append(item)
        return out

    def done_otherwise(
        self, items: Iterable[T], settings: Mapping[str, Any], key: Callable[[T], tuple[str, str]]
    ) -> dict[str, list[str]]:
        """The items done at their version with other settings than these, each with how they
        differ (`--min-area 500, now 1000`); items recorded without settings are left out."""
        found = {}
        for item in items:
            item_id, version = key(item)
            before = self.done[item_id].get("settings") if self.is_done(item_id, version) else None
            if before and before != settings:
                found[item_id] = changed_options(before, settings, {})
        return found

    # --- changes

    def mark_done(
        self,
        item_id: str,
        version: str,
        outputs: Mapping[str, str] | None = None,
        at: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a successful prediction, with the `settings` its outputs were made with (and
        forget earlier failures of the item)."""
        self.done[item_id] = {
            "version": version,
            "at": at or _now(),
            "outputs": {k: str(v) for k, v in (outputs or {}).items()},
            "settings": dict(settings or {}),
        }
        self.failed.pop(item_id, None)
        self.skipped.pop(item_id, None)

    def mark_failed(self, item_id: str, version: str, reason: str, at: str | None = None) -> None:
        """Record a failure with its reason; attempts count up while the version stays."""
        before = self.failed.get(item_id)
        attempts = 1
        if before is not None and before.get("version") == version:
            attempts = int(before.get("attempts", 0)) + 1
        self.failed[item_id] = {
            "version": version,
            "at": at or _now(),
            "reason": _one_line(reason),
            "attempts": attempts,
        }
        self.skipped.pop(item_id, None)

    def mark_skipped(
        self, item_id: str, version: str, reason: str, settings: str = "", at: str | None = None
    ) -> None:
        """Record a refusal: not checked again until the item or `settings` change."""
        self.skipped[item_id] = {
            "version": version,
            "at": at or _now(),
            "reason": _one_line(reason),
            "settings": settings,
        }
        self.failed.pop(item_id, None)

    def _sections(self) -> tuple[dict[str, dict[str, Any]], ...]:
        return self.done, self.failed, self.skipped

    def _changed(self) -> set[str]:
        """The ids whose entries differ from those loaded (`base`): this run's changes."""
        now = self.to_dict()
        return {
            item_id
            for name, entries in now.items()
            for item_id in set(entries) | set(self.base.get(name, {}))
            if entries.get(item_id) != self.base.get(name, {}).get(item_id)
        }

    # --- JSON

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed}

    @classmethod
    def load(cls, path: str | Path, model: str) -> IngestRecord:
        """This model's record from the file (or object) at `path`; empty when there is none."""
        return cls._of(model, _read(str(path)))

    @classmethod
    def _of(cls, model: str, data: Mapping[str, Any]) -> IngestRecord:
        """This model's record in a record file's content, as loaded (`base`)."""
        entry = data["models"].get(model, {})
        record = cls(
            model,
            dict(entry.get("done", {})),
            dict(entry.get("failed", {})),
            dict(entry.get("skipped", {})),
        )
        record.base = copy.deepcopy(record.to_dict())
        return record

    def save(self, path: str | Path) -> None:
        """Write the entries this run changed into the file (or object) at `path`, the others
        as they are there now (another run's into the same folder, other models'),
        atomically; this record then holds what the file does."""
        path = str(path)
        with _updating(path):
            data = _read(path)
            data.update(format=FORMAT, version=VERSION)
            stored = IngestRecord._of(self.model, data)
            for item_id in self._changed():
                for ours, theirs in zip(self._sections(), stored._sections(), strict=True):
                    theirs.pop(item_id, None)
                    if item_id in ours:
                        theirs[item_id] = ours[item_id]
            self.done, self.failed, self.skipped = stored.done, stored.failed, stored.skipped
            self.base = copy.deepcopy(self.to_dict())
            data["models"][self.model] = self.to_dict()
            if not is_url(path):
                atomic_write_json(Path(path), data)
                return
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / RECORD_FILE
            local.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
            upload(local, path)


@contextlib.contextmanager
def _updating(path: str) -> Iterator[None]:
    """Around reading and rewriting the local record at `path`: its folder locked (others wait),
    so that a run saving meanwhile cannot drop this run's entries. Object storage has no lock:
    there the window between reading and writing is all that two runs can race in."""
    if is_url(path):
        yield
        return
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # the lock goes with it


def check_record(path: str | Path) -> None:
    """InputError when the record at `path` exists but cannot be used (before any work)."""
    _read(str(path))


def _read(path: str) -> dict[str, Any]:
    restart = "move it away to start over (every scene is then predicted again)"
    try:
        text = read_text(path)
        if text is None:
            return {"format": FORMAT, "version": VERSION, "models": {}}
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ingest record ({exc}); {restart}") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("models"), dict)
    ):
        raise InputError(f"{path}: not a convlora-geo ingest record; {restart}")
    if int(data.get("version", 0)) > VERSION:
        raise InputError(f"{path}: ingest record version {data['version']} is newer than this one")
    return data
