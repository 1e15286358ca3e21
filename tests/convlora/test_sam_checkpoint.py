"""Loading official-format SAM checkpoints: strict keys, any image size, clear mismatch errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convlora.files import sha256_file
from convlora.model import build_model
from convlora.registry import build_sam_variant
from convlora.sam_checkpoint import (
    SamCheckpointError,
    fit_state_dict,
    resize_pos_embed,
    resize_rel_pos,
)
from tests.support.tiny_sam import save_tiny_sam, tiny_config


def _meta_shapes(variant: str, image_size: int) -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in build_sam_variant(variant, image_size).state_dict().items()}


def test_loads_checkpoint_exactly_and_records_sha256(tiny_sam_path: Path) -> None:
    state = torch.load(tiny_sam_path, weights_only=True)
    model = build_model(tiny_config(adapter="decoder", num_classes=1), tiny_sam_path)
    assert model.sam_checkpoint_sha256 == sha256_file(tiny_sam_path)
    encoder = model.image_encoder.state_dict()
    for key, value in state.items():
        if key.startswith("image_encoder."):
            assert torch.equal(encoder[key.removeprefix("image_encoder.")], value), key
    decoder = model.mask_decoder.state_dict()
    assert torch.equal(
        decoder["transformer.layers.0.mlp.lin1.weight"],
        state["mask_decoder.transformer.layers.0.mlp.lin1.weight"],
    )


def test_512_model_from_1024_checkpoint(tmp_path: Path) -> None:
    path = save_tiny_sam(tmp_path / "tiny_1024.pth", image_size=1024, seed=3)
    state = torch.load(path, weights_only=True)
    model = build_model(tiny_config(image_size=512, num_classes=1), path).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out.mask_logits.shape == (1, 1, 512, 512)
    loaded = {f"image_encoder.{k}": v for k, v in model.image_encoder.state_dict().items()}
    loaded = {k.replace(".qkv.base.", ".qkv."): v for k, v in loaded.items()}
    global_block = "image_encoder.blocks.3.attn."
    resized = {"image_encoder.pos_embed", global_block + "rel_pos_h", global_block + "rel_pos_w"}
    for key, value in state.items():
        if key.startswith("image_encoder.") and key not in resized:
            assert torch.equal(loaded[key], value), key
    assert loaded["image_encoder.pos_embed"].shape == (1, 32, 32, 128)
    assert torch.equal(
        loaded["image_encoder.pos_embed"], resize_pos_embed(state["image_encoder.pos_embed"], 32)
    )
    assert loaded[global_block + "rel_pos_h"].shape == (63, 32)
    assert torch.equal(
        loaded[global_block + "rel_pos_h"], resize_rel_pos(state[global_block + "rel_pos_h"], 63)
    )
    # windowed blocks keep their 7x7 tables
    assert loaded["image_encoder.blocks.0.attn.rel_pos_h"].shape == (13, 32)


def test_resizing_to_the_same_size_is_identity() -> None:
    pos = torch.randn(1, 16, 16, 8)
    torch.testing.assert_close(resize_pos_embed(pos, 16), pos)
    rel = torch.randn(31, 8)
    torch.testing.assert_close(resize_rel_pos(rel, 31), rel)


def test_vit_b_1024_state_fits_512_shapes_on_meta() -> None:
    with torch.device("meta"):
        state = build_sam_variant("vit_b", 1024).state_dict()
    expected = _meta_shapes("vit_b", 512)
    fitted = fit_state_dict(state, expected, "vit_b", "sam_vit_b.pth")
    assert {k: v.shape for k, v in fitted.items()} == expected
    assert fitted["image_encoder.pos_embed"].shape == (1, 32, 32, 768)
    assert fitted["image_encoder.blocks.2.attn.rel_pos_h"].shape == (63, 64)


def test_wrong_variant_is_named() -> None:
    with torch.device("meta"):
        state = build_sam_variant("vit_b").state_dict()
    with pytest.raises(SamCheckpointError, match="looks like a vit_b checkpoint") as info:
        fit_state_dict(state, _meta_shapes("vit_h", 1024), "vit_h", "sam_vit_b.pth")
    assert "sam_vit_b.pth: does not fit SAM vit_h" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_misshaped_keys_are_refused(tiny_sam_path: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_sam_path, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.neck.0.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(SamCheckpointError) as info:
        build_model(tiny_config(), broken)
    message = str(info.value)
    assert "1 missing keys (e.g. mask_decoder.iou_token.weight)" in message
    assert "image_encoder.neck.0.weight (1,) != (256, 128, 1, 1)" in message


def test_non_state_dict_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(SamCheckpointError, match="not a readable weights-only"):
        build_model(tiny_config(), text)
    with pytest.raises(SamCheckpointError, match="not found"):
        build_model(tiny_config(), tmp_path / "absent.pth")
