"""The files of an adapter checkpoint and its JSON metadata, readable without torch: a command
can say that a model path is wrong before it pays for importing the model code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convlora.errors import ConvLoRAInputError

FORMAT = "convlora-adapter/1"
WEIGHTS_NAME = "adapter.safetensors"
METADATA_NAME = "adapter.json"
LATEST_DIR = "last"  # a run folder's latest checkpoint, beside its best adapter


class AdapterMismatchError(ConvLoRAInputError):
    """An adapter checkpoint does not fit the model, SAM checkpoint or configuration it meets."""


def adapter_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths from a run directory or one of its two adapter files."""
    path = Path(path)
    if path.is_file() and path.name not in (WEIGHTS_NAME, METADATA_NAME):
        raise AdapterMismatchError(
            f"{path}: not an adapter file: give a run folder, or its {WEIGHTS_NAME} or "
            f"{METADATA_NAME}"
        )
    folder = path if path.is_dir() else path.parent
    weights, meta = folder / WEIGHTS_NAME, folder / METADATA_NAME
    latest = folder / LATEST_DIR
    if not weights.is_file() and (latest / WEIGHTS_NAME).is_file():
        raise AdapterMismatchError(
            f"{folder}: no best model yet (the run has not finished a validation); its latest "
            f"checkpoint is {latest}: give that"
        )
    for p in (weights, meta):
        if not p.is_file():
            raise AdapterMismatchError(f"{p}: adapter file not found")
    return weights, meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The adapter JSON of a checkpoint directory or file, with its format checked."""
    _, meta_path = adapter_paths(path)
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdapterMismatchError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else metadata
        raise AdapterMismatchError(f"{meta_path}: format {found!r} is not {FORMAT!r}")
    return metadata
