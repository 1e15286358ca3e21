"""Adapter checkpoints: safetensors with the trained tensors plus JSON metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from convlora.adapter_files import (
    FORMAT,
    METADATA_NAME,
    WEIGHTS_NAME,
    AdapterMismatchError,
    adapter_paths,
    read_metadata,
)
from convlora.config import ModelConfig
from convlora.files import shareable
from convlora.layers.lora import LoRALinear
from convlora.model import SegmentationSAM, build_model
from convlora.sam_checkpoint import SamCheckpointError, check_sam_checkpoint

RESERVED_KEYS = ("format", "config", "sam_checkpoint_sha256", "base_included")


def adapter_tensors(model: SegmentationSAM) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: the trainable tensors, or everything when no SAM base exists.

    A model built without a SAM checkpoint has random frozen weights that nothing could restore,
    so its whole state dict is saved (`base_included` in the metadata).
    """
    if model.sam_checkpoint_sha256 is None:
        return dict(model.state_dict())
    return model.trainable_state_dict()


def save_adapter(model: SegmentationSAM, directory: str | Path, metadata: dict[str, Any]) -> Path:
    """Write `adapter.safetensors` and `adapter.json` into `directory` atomically; return it.

    The JSON holds {"format", "config", "sam_checkpoint_sha256", "base_included", **metadata}
    (metadata typically: classes, bands, normalization).
    """
    clash = sorted(set(metadata) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"adapter metadata may not set reserved keys {clash}")
    if any(isinstance(m, LoRALinear) and m.merged for m in model.modules()):
        raise ValueError("LoRA weights are merged into the base; call unmerge() before saving")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter_tensors(model).items()}
    document = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "sam_checkpoint_sha256": model.sam_checkpoint_sha256,
        "base_included": model.sam_checkpoint_sha256 is None,
        **metadata,
    }
    weights_tmp = directory / f".{WEIGHTS_NAME}.{os.getpid()}.tmp"
    json_tmp = directory / f".{METADATA_NAME}.{os.getpid()}.tmp"
    try:
        save_file(tensors, str(weights_tmp), metadata={"format": "pt"})
        shareable(weights_tmp)
        json_tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(weights_tmp, directory / WEIGHTS_NAME)
        os.replace(json_tmp, directory / METADATA_NAME)
    finally:
        weights_tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
    return directory


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [
        f"{key} is {saved.get(key)!r} in the adapter but {current.get(key)!r} in the model"
        for key in current
        if saved.get(key) != current.get(key)
    ]


def _mismatches(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> str:
    """What keeps stored tensors (names and shapes) from fitting a model ("" when they fit)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k} {found[k]} != {expected[k]}"
        for k in sorted(set(found) & set(expected))
        if found[k] != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:2])})")
    return ", ".join(problems)


def _expected(model: SegmentationSAM, base_included: bool) -> dict[str, torch.Tensor]:
    return dict(model.state_dict()) if base_included else model.trainable_state_dict()


def _load_tensors(model: SegmentationSAM, weights: Path, base_included: bool) -> None:
    """Strictly load the stored tensors: same names and shapes as the model expects."""
    tensors = load_file(str(weights))
    expected = _expected(model, base_included)
    problems = _mismatches(
        {k: tuple(v.shape) for k, v in tensors.items()},
        {k: tuple(v.shape) for k, v in expected.items()},
    )
    if problems:
        raise AdapterMismatchError(f"{weights}: does not fit the model: {problems}")
    model.load_state_dict(tensors, strict=False)


def check_weights(weights: Path, cfg: ModelConfig, base_included: bool) -> None:
    """Check an adapter's weights file without reading its tensors: a readable safetensors
    header whose tensors (names and shapes) fit the model `cfg` describes (built on the meta
    device). A truncated or damaged file, or metadata that disagrees with the weights (other
    classes, bands or adapter settings), is refused with one line naming the file."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for damaged files
        reason = " ".join(str(exc).split()).removeprefix("Error while deserializing header: ")
        raise AdapterMismatchError(
            f"{weights}: damaged adapter weights ({reason}); copy the file again or retrain"
        ) from None
    with torch.device("meta"):
        model = build_model(cfg)
    expected = {k: tuple(v.shape) for k, v in _expected(model, base_included).items()}
    problems = _mismatches(found, expected)
    if problems:
        raise AdapterMismatchError(
            f"{weights}: does not fit the model its adapter.json describes: {problems}"
        )


def load_adapter_into(model: SegmentationSAM, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint into an existing model; refuse a different variant, size or adapter.

    Returns the metadata. The model's configuration and base SAM checkpoint must equal the
    checkpoint's.
    """
    weights, meta_path = adapter_paths(path)
    metadata = read_metadata(path)
    differences = _config_differences(metadata.get("config", {}), model.config.to_dict())
    saved_sha = metadata.get("sam_checkpoint_sha256")
    if saved_sha != model.sam_checkpoint_sha256:
        differences.append(
            f"base SAM checkpoint sha256 is {saved_sha} in the adapter but "
            f"{model.sam_checkpoint_sha256} in the model"
        )
    if differences:
        raise AdapterMismatchError(f"{meta_path}: {'; '.join(differences)}")
    _load_tensors(model, weights, bool(metadata.get("base_included")))
    return metadata


def check_adapter(
    path: str | Path, sam_checkpoint: str | Path | None = None, *, option: str = "sam_checkpoint"
) -> dict[str, Any]:
    """Check an adapter checkpoint without building its model; return its metadata.

    Its files and format, its model config, its weights' header against that config (tensors
    are not read: `check_weights`), and the SAM checkpoint: required when the adapter
    was trained on one, refused when it stores its base weights, and (shapes only, tensors
    mapped not read) of the adapter's SAM variant. Whether it is the very file the adapter was
    trained on (sha256) is checked when the model is loaded. Messages name the SAM checkpoint
    `option` as the caller's users know it (`--sam-checkpoint` on a command line).
    """
    weights, meta_path = adapter_paths(path)
    metadata = read_metadata(path)
    try:
        cfg = ModelConfig.from_dict(metadata["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterMismatchError(f"{meta_path}: invalid model config ({exc})") from exc
    check_weights(weights, cfg, bool(metadata.get("base_included")))
    saved_sha = metadata.get("sam_checkpoint_sha256")
    if saved_sha is None and sam_checkpoint is not None:
        raise AdapterMismatchError(
            f"{meta_path}: adapter was trained without a SAM checkpoint and stores its base "
            f"weights; do not pass {option}"
        )
    if saved_sha is not None and sam_checkpoint is None:
        raise AdapterMismatchError(
            f"{meta_path}: adapter needs the SAM {cfg.sam_variant} checkpoint with sha256 "
            f"{saved_sha}; pass it as {option}"
        )
    if sam_checkpoint is not None:
        try:
            check_sam_checkpoint(sam_checkpoint, cfg.sam_variant, cfg.image_size)
        except SamCheckpointError as exc:
            message = f"{meta_path}: adapter needs SAM {cfg.sam_variant}; {exc}"
            raise AdapterMismatchError(message) from exc
    return metadata


def load_adapter(
    path: str | Path,
    sam_checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> tuple[SegmentationSAM, dict[str, Any]]:
    """Rebuild the model of an adapter checkpoint (dir or .safetensors) in eval mode.

    `sam_checkpoint` must be the SAM file the adapter was trained on (checked by sha256) unless the
    adapter includes its base weights (trained without one), in which case it must be None.
    """
    metadata = check_adapter(path, sam_checkpoint)
    _, meta_path = adapter_paths(path)
    model = build_model(ModelConfig.from_dict(metadata["config"]), sam_checkpoint)
    saved_sha = metadata.get("sam_checkpoint_sha256")
    if model.sam_checkpoint_sha256 != saved_sha:
        raise AdapterMismatchError(
            f"{meta_path}: adapter was trained on SAM checkpoint sha256 {saved_sha}, but "
            f"{sam_checkpoint} has sha256 {model.sam_checkpoint_sha256}"
        )
    load_adapter_into(model, path)
    return model.to(device).eval(), metadata
