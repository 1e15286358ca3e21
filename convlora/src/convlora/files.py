"""File helpers shared by everything that writes outputs: checksums and atomic writes.

An output is written under a temporary name in its own folder and renamed into place when it is
complete, so a reader never sees half a file and a crash never damages the previous version.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

CHUNK = 1 << 22


def sha256_file(path: str | Path, chunk_size: int = CHUNK) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def temporary_path(path: str | Path) -> Path:
    """A unique hidden name beside `path` for writing it before the rename."""
    target = Path(path)
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def shareable(path: str | Path) -> None:
    """Give a new file the permissions any new file gets (0666 less the umask), for writers that
    make theirs private (safetensors: 0600), so that a colleague or another worker can read it."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, flushed to disk, then renamed."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any, **dumps: Any) -> None:
    """Indented JSON with sorted keys, written atomically; `dumps` passes json.dumps options."""
    options: dict[str, Any] = {"indent": 2, "sort_keys": True, **dumps}
    atomic_write_text(path, json.dumps(data, **options) + "\n")
