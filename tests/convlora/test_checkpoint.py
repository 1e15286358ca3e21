"""Adapter checkpoints: trainable tensors + JSON, exact round trip, refused mismatches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from convlora.adapter_files import LATEST_DIR, AdapterMismatchError
from convlora.checkpoint import load_adapter, load_adapter_into, save_adapter
from convlora.files import sha256_file
from convlora.model import build_model
from tests.support.tiny_sam import randomize_, save_tiny_sam, tiny_config

METADATA = {
    "classes": [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "corn", "color": "#ffd300"},
        {"id": 2, "name": "soybeans", "color": "#267000"},
        {"id": 3, "name": "wheat", "color": "#a57000"},
    ],
    "bands": [4, 3, 2, 5],
    "normalization": {"mean": [1.0] * 4, "std": [2.0] * 4, "p2": [0.0] * 4, "p98": [9.0] * 4},
}
CFG = {"image_size": 128, "in_channels": 4, "band_init": (2, 1, 0)}


def _trained(sam_path: Path | None, **overrides) -> torch.nn.Module:
    """A model whose trainable tensors are no longer at their initial values."""
    torch.manual_seed(0)
    model = build_model(tiny_config(**{**CFG, **overrides}), sam_path)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_round_trip_gives_identical_outputs(tiny_sam_path: Path, tmp_path: Path) -> None:
    model = _trained(tiny_sam_path)
    folder = save_adapter(model, tmp_path / "run", METADATA)
    stored = load_file(str(folder / "adapter.safetensors"))
    assert set(stored) == {n for n, p in model.named_parameters() if p.requires_grad}
    document = json.loads((folder / "adapter.json").read_text())
    assert document["format"] == "convlora-adapter/1"
    assert document["config"] == model.config.to_dict()
    assert document["sam_checkpoint_sha256"] == sha256_file(tiny_sam_path)
    assert document["classes"] == METADATA["classes"]
    assert document["normalization"] == METADATA["normalization"]

    torch.manual_seed(123)  # a fresh model starts from other random adapter values
    loaded, metadata = load_adapter(folder / "adapter.safetensors", tiny_sam_path)
    assert not loaded.training and metadata["bands"] == METADATA["bands"]
    x = torch.randn(2, 4, 128, 128)
    with torch.no_grad():
        expected, actual = model(x), loaded(x)
    assert torch.equal(expected.mask_logits, actual.mask_logits)
    assert torch.equal(expected.class_logits, actual.class_logits)
    assert not list(folder.glob(".*tmp"))


def test_model_without_sam_checkpoint_stores_its_base(tmp_path: Path) -> None:
    model = _trained(None, adapter="lora")
    folder = save_adapter(model, tmp_path, METADATA)
    assert json.loads((folder / "adapter.json").read_text())["base_included"] is True
    mask = os.umask(0)
    os.umask(mask)  # as any new file: a colleague or another worker account can read the model
    assert (folder / "adapter.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    torch.manual_seed(7)
    loaded, _ = load_adapter(folder)
    x = torch.randn(1, 4, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x).mask_logits, loaded(x).mask_logits)
    with pytest.raises(AdapterMismatchError, match="do not pass sam_checkpoint"):
        load_adapter(folder, sam_checkpoint=tmp_path / "sam.pth")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sam_variant", "vit_b", "sam_variant is 'tiny' in the adapter but 'vit_b' in the model"),
        ("image_size", 256, "image_size is 128 in the adapter but 256 in the model"),
        ("adapter", "lora", "adapter is 'conv-lora' in the adapter but 'lora' in the model"),
        ("experts", 4, "experts is 8 in the adapter but 4 in the model"),
    ],
)
def test_loading_into_a_different_model_is_refused(
    field: str, value: object, message: str, tmp_path: Path
) -> None:
    folder = save_adapter(_trained(None), tmp_path, METADATA)
    cfg = tiny_config(**{**CFG, field: value})
    with torch.device("meta"):
        other = build_model(cfg)
    with pytest.raises(AdapterMismatchError, match=message):
        load_adapter_into(other, folder)


def test_wrong_or_missing_sam_checkpoint_is_refused(tiny_sam_path: Path, tmp_path: Path) -> None:
    folder = save_adapter(_trained(tiny_sam_path), tmp_path / "run", METADATA)
    with pytest.raises(AdapterMismatchError, match="pass it as sam_checkpoint"):
        load_adapter(folder)
    other = save_tiny_sam(tmp_path / "other.pth", seed=9)
    with pytest.raises(AdapterMismatchError, match="trained on SAM checkpoint sha256"):
        load_adapter(folder, other)
    with pytest.raises(AdapterMismatchError, match="base SAM checkpoint sha256"):
        load_adapter_into(build_model(tiny_config(**CFG), other), folder)


def test_tampered_tensors_are_refused(tiny_sam_path: Path, tmp_path: Path) -> None:
    folder = save_adapter(_trained(tiny_sam_path), tmp_path, METADATA)
    weights = folder / "adapter.safetensors"
    tensors = load_file(str(weights))
    tensors["mask_decoder.extra.weight"] = torch.zeros(2)
    del tensors["mask_decoder.class_head.bias"]
    save_file(tensors, str(weights))
    with pytest.raises(AdapterMismatchError) as info:
        load_adapter(folder, tiny_sam_path)
    assert "1 missing tensors (e.g. mask_decoder.class_head.bias)" in str(info.value)
    assert "1 unexpected tensors (e.g. mask_decoder.extra.weight)" in str(info.value)


def test_reserved_metadata_and_missing_files(tmp_path: Path) -> None:
    model = randomize_(build_model(tiny_config(**CFG)), 0)
    with pytest.raises(ValueError, match="reserved keys"):
        save_adapter(model, tmp_path, {"config": {}})
    with pytest.raises(AdapterMismatchError, match="adapter file not found"):
        load_adapter(tmp_path / "nothing")


def test_a_run_without_a_best_model_yet_points_to_its_latest_checkpoint(tmp_path: Path) -> None:
    """A run folder read before its first validation holds only last/: say so, not 'adapter
    file not found'."""
    run = tmp_path / "run"
    save_adapter(randomize_(build_model(tiny_config(**CFG)), 0), run / LATEST_DIR, METADATA)
    with pytest.raises(AdapterMismatchError) as info:
        load_adapter(run)
    assert str(info.value) == (
        f"{run}: no best model yet (the run has not finished a validation); its latest "
        f"checkpoint is {run / LATEST_DIR}: give that"
    )
    load_adapter(run / LATEST_DIR)
