"""The trained model for prediction, loaded once per process (several scenes, one load)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

from convlora.adapter_files import WEIGHTS_NAME
from convlora.checkpoint import load_adapter
from convlora.compile import compile_for_inference
from convlora.errors import ConvLoRAInputError
from convlora.files import sha256_file
from convlora.model import SegmentationSAM
from geo.errors import InputError


def load_model(
    model: str, sam_checkpoint: str | None, device: torch.device, compile: bool = False
) -> tuple[SegmentationSAM, dict[str, Any]]:
    """The adapter's model in eval mode on `device` (compiled in place with `compile`), and its
    record for manifests (name and checksums). Loaded once per process while the files are
    unchanged."""
    weights = Path(model) if Path(model).is_file() else Path(model) / WEIGHTS_NAME
    return _load(str(Path(model)), _stamp(str(weights)), sam_checkpoint,
                 _stamp(sam_checkpoint), str(device), compile)  # fmt: skip


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _load(
    model: str,
    weights_stamp: tuple[int, int] | None,
    sam_checkpoint: str | None,
    sam_stamp: tuple[int, int] | None,
    device: str,
    compile: bool,
) -> tuple[SegmentationSAM, dict[str, Any]]:
    try:
        net, metadata = load_adapter(model, sam_checkpoint=sam_checkpoint, device=device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    if compile:
        compile_for_inference(net)
    weights = Path(model) if Path(model).is_file() else Path(model) / WEIGHTS_NAME
    config = metadata["config"]
    record = {
        "name": f"convlora-{config['sam_variant']}-{config['adapter']}",
        "adapter_sha256": sha256_file(weights),
        "sam_checkpoint_sha256": net.sam_checkpoint_sha256,
    }
    return net, record
