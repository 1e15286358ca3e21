"""Resumable training state: random generator states and atomically replaced checkpoint folders."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from convlora.adapter_files import METADATA_NAME, WEIGHTS_NAME
from convlora.errors import ConvLoRAInputError

STATE_FILE = "training_state.pt"  # optimiser, scheduler, RNG states and position of RUN_DIR/last
STATE_KEYS = ("spec", "progress", "optimizer", "scheduler", "rng")


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The states of all global random generators, in types a weights-only `torch.load` accepts."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng`."""
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value: Any) -> Any:
    """Python's random state is nested tuples; a save/load round trip may return lists."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


class CheckpointDir:
    """A folder such as RUN_DIR/last that is replaced as a whole, never left half-written.

    A new version is written under `.last.tmp`, the current one is renamed `.last.old`, the new one
    renamed into place and the old one deleted. A process killed between the two renames leaves
    `.last.old`, which `path()` puts back.
    """

    def __init__(self, path: Path) -> None:
        self.final = Path(path)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp")
        self.old = self.final.with_name(f".{self.final.name}.old")

    def path(self) -> Path | None:
        """The last complete version, or None."""
        if not self.final.exists() and self.old.exists():
            os.replace(self.old, self.final)
        return self.final if self.final.exists() else None

    def current(self) -> Path | None:
        """The last complete version where it is now, or None (`path` without putting back)."""
        return next((p for p in (self.final, self.old) if p.exists()), None)

    def write(self, fill: Callable[[Path], None]) -> Path:
        """Call `fill(folder)` on an empty temporary folder, then swap it in."""
        self.path()
        for stale in (self.tmp, self.old):
            if stale.exists():
                shutil.rmtree(stale)
        self.tmp.mkdir(parents=True)
        fill(self.tmp)
        if self.final.exists():
            os.replace(self.final, self.old)
        os.replace(self.tmp, self.final)
        if self.old.exists():
            shutil.rmtree(self.old)
        return self.final


def read_resumable(folder: Path) -> dict[str, Any]:
    """The training state of a RUN_DIR/last folder, its adapter files checked readable (the JSON
    parsed, the weights' header read, no tensor). A missing or damaged file is a
    ConvLoRAInputError naming it and saying how to start over."""
    readers: dict[str, Callable[[Path], Any]] = {
        METADATA_NAME: _read_json_object, WEIGHTS_NAME: _read_tensor_names, STATE_FILE: _read_state,
    }  # fmt: skip
    read: dict[str, Any] = {}
    for name, reader in readers.items():
        path = folder / name
        try:
            read[name] = reader(path)
        except MemoryError:
            raise
        except FileNotFoundError:
            raise _damaged(path, folder, "missing") from None
        except Exception as exc:  # torch, safetensors and json raise their own error types
            raise _damaged(path, folder, str(exc)) from None
    state: dict[str, Any] = read[STATE_FILE]
    return state


def _damaged(path: Path, folder: Path, reason: str) -> ConvLoRAInputError:
    """The error for a damaged file of a resumable state: the first sentence of the reason."""
    reason = (
        " ".join(reason.split()).split(". ")[0].removeprefix("Error while deserializing header: ")
    )
    return ConvLoRAInputError(
        f"{path}: damaged training state ({reason}); move {folder} away to start over"
    )


def _read_json_object(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _read_tensor_names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(path)
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())  # noqa: SIM118 (a safetensors handle is not a dict)


def _read_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not set(STATE_KEYS) <= set(state):
        raise ValueError(f"not a training state (it lacks {', '.join(STATE_KEYS)})")
    return state


class MetricsLog:
    """`metrics.jsonl`: one JSON object per line; cut back to a checkpoint's offset on resume."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, offset: int) -> None:
        """Drop lines written after the checkpoint being resumed (they will be written again)."""
        if self.enabled and self.path.exists() and self.path.stat().st_size > offset:
            with self.path.open("r+b") as f:
                f.truncate(offset)

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def append(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")  # per-class values in class order
            f.flush()
            os.fsync(f.fileno())
