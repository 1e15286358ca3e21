"""The ingest record: which STAC items each model has predicted, and which failed and why.

An item is done for a model when its (id, version) was predicted by that model; its version is
the item's `updated` time (else `created`, else its datetime; see `StacItem.version`), so a
reprocessed item is predicted again. Failed items are kept with the reason and the number of
attempts, and are due again on the next run until they succeed (or, with `max_attempts`, until
they have failed that many times at the same version).

One JSON file holds the records of every model; `save` re-reads it and replaces only this
model's part, then writes it atomically (a temporary file renamed into place), so an interrupted
run leaves the previous record whole. Runs of the same model over the same output must not
overlap (give the deployment a concurrency limit of one); runs of different models may.

    {"format": "convlora-geo stac ingest record", "version": 1,
     "models": {MODEL_ID: {"done":   {ITEM_ID: {"version": V, "at": T, "outputs": {...}}},
                           "failed": {ITEM_ID: {"version": V, "at": T, "reason": R,
                                                "attempts": N}}}}}
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from convlora.files import atomic_write_json
from geo.errors import InputError

FORMAT = "convlora-geo stac ingest record"
VERSION = 1
RECORD_FILE = "stac-ingest-record.json"
MAX_REASON = 2000  # characters of a failure reason kept

T = TypeVar("T")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class IngestRecord:
    """What one model has done with the items of a STAC source (a plain data structure)."""

    model: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- questions

    def is_done(self, item_id: str, version: str) -> bool:
        entry = self.done.get(item_id)
        return entry is not None and entry.get("version") == version

    def due(
        self,
        items: Iterable[T],
        key: Callable[[T], tuple[str, str]] = lambda i: i.key,  # type: ignore[attr-defined]
        max_attempts: int | None = None,
    ) -> list[T]:
        """The items not done at their version, in the given order: new ones, new versions, and
        earlier failures (unless they failed `max_attempts` times at this version)."""
        out = []
        for item in items:
            item_id, version = key(item)
            if self.is_done(item_id, version):
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

    # --- changes

    def mark_done(
        self,
        item_id: str,
        version: str,
        outputs: Mapping[str, str] | None = None,
        at: str | None = None,
    ) -> None:
        """Record a successful prediction (and forget earlier failures of the item)."""
        self.done[item_id] = {
            "version": version,
            "at": at or _now(),
            "outputs": {k: str(v) for k, v in (outputs or {}).items()},
        }
        self.failed.pop(item_id, None)

    def mark_failed(self, item_id: str, version: str, reason: str, at: str | None = None) -> None:
        """Record a failure with its reason; attempts count up while the version stays."""
        before = self.failed.get(item_id)
        attempts = 1
        if before is not None and before.get("version") == version:
            attempts = int(before.get("attempts", 0)) + 1
        reason = " ".join(str(reason).split()) or "unknown error"
        self.failed[item_id] = {
            "version": version,
            "at": at or _now(),
            "reason": reason[:MAX_REASON],
            "attempts": attempts,
        }

    # --- JSON

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "failed": self.failed}

    @classmethod
    def load(cls, path: str | Path, model: str) -> IngestRecord:
        """This model's record from the file at `path` (empty when the file does not exist)."""
        entry = _read(Path(path))["models"].get(model, {})
        return cls(model, dict(entry.get("done", {})), dict(entry.get("failed", {})))

    def save(self, path: str | Path) -> None:
        """Replace this model's part of the file at `path` (others are kept), atomically."""
        path = Path(path)
        data = _read(path)
        data["models"][self.model] = self.to_dict()
        atomic_write_json(path, data)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": FORMAT, "version": VERSION, "models": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: unreadable ingest record ({exc}); move it away to start over"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a convlora-geo STAC ingest record")
    if int(data.get("version", 0)) > VERSION:
        raise InputError(f"{path}: ingest record version {data['version']} is newer than this one")
    data.setdefault("models", {})
    return data
