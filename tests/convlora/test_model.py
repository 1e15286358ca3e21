"""SegmentationSAM: unchanged SAM at step 0, trainable set, batched decoder, batch independence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from convlora.adapter_files import read_metadata
from convlora.band_adapter import BandAdapter
from convlora.checkpoint import load_adapter, load_adapter_into, save_adapter
from convlora.config import ConfigError, ModelConfig
from convlora.losses import build_criterion
from convlora.model import build_model
from convlora.registry import build_sam_variant
from tests.support.tiny_sam import randomize_, tiny_config


@pytest.mark.parametrize("adapter", ["conv-lora", "lora"])
def test_adapters_leave_sam_unchanged_at_step_zero(adapter: str, tiny_sam_path: Path) -> None:
    sam = build_sam_variant("tiny")
    sam.load_state_dict(torch.load(tiny_sam_path, weights_only=True))
    adapted = build_model(tiny_config(adapter=adapter, num_classes=1), tiny_sam_path).train()
    plain = build_model(tiny_config(adapter="decoder", num_classes=1), tiny_sam_path).train()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(adapted.image_encoder(x), sam.image_encoder(x))
        out, reference = adapted(x), plain(x)
    assert torch.equal(out.mask_logits, reference.mask_logits)
    assert out.aux_loss.dim() == 0
    assert (float(out.aux_loss) > 0) == (adapter == "conv-lora")


def _sam_decoder_with(decoder, num_tokens: int) -> MaskDecoder:
    """segment-anything's own MaskDecoder holding the same weights and `num_tokens` tokens."""
    sam_decoder = MaskDecoder(
        num_multimask_outputs=num_tokens - 1,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
    )
    sam_decoder.transformer.load_state_dict(decoder.transformer.state_dict())
    sam_decoder.output_upscaling.load_state_dict(decoder.output_upscaling.state_dict())
    sam_decoder.iou_token.load_state_dict(decoder.iou_token.state_dict())
    sam_decoder.mask_tokens.load_state_dict(decoder.mask_tokens.state_dict())
    for mlp in sam_decoder.output_hypernetworks_mlps:
        mlp.load_state_dict(decoder.output_hypernetwork.state_dict())
    return sam_decoder


@pytest.mark.parametrize("num_classes", [1, 3])
def test_batched_decoder_equals_segment_anything_per_image(num_classes: int) -> None:
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_config(num_classes=num_classes)), 1).eval()
    decoder = model.mask_decoder
    sam_decoder = _sam_decoder_with(decoder, decoder.num_mask_tokens).eval()
    embeddings = torch.randn(3, 256, 16, 16)
    image_pe = model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        masks, class_logits = decoder(
            embeddings, image_pe, model.prompt_encoder(None, None, None)[1]
        )
        for i in range(3):
            sparse, dense = model.prompt_encoder(None, None, None)
            expected, _ = sam_decoder.predict_masks(embeddings[i : i + 1], image_pe, sparse, dense)
            torch.testing.assert_close(masks[i : i + 1], expected, rtol=1e-4, atol=1e-5)
    assert masks.shape == (3, decoder.num_mask_tokens, 64, 64)
    assert (class_logits is None) == (num_classes == 1)


def test_mask_tokens_start_as_sam_token_zero(tiny_sam_path: Path) -> None:
    state = torch.load(tiny_sam_path, weights_only=True)
    model = build_model(tiny_config(num_classes=5), tiny_sam_path)
    tokens = model.mask_decoder.mask_tokens.weight
    assert tokens.shape == (5, 256)
    assert torch.equal(tokens, state["mask_decoder.mask_tokens.weight"][:1].expand(5, -1))
    assert model.mask_decoder.class_head.out_features == 6
    assert not hasattr(model.mask_decoder, "iou_prediction_head")
    noisy = build_model(tiny_config(num_classes=5, mask_token_init="copy+noise"), tiny_sam_path)
    noisy_tokens = noisy.mask_decoder.mask_tokens.weight
    assert torch.equal(noisy_tokens[0], tokens[0])
    assert all(not torch.equal(noisy_tokens[i], tokens[0]) for i in range(1, 5))


def test_one_image_does_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_config(image_size=128)), 2).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        layer = model.image_encoder.blocks[0].attn.qkv
        layer.gate.w_gate.normal_(std=5.0)
        batched = model(x)
        for i in range(2):
            alone = model(x[i : i + 1])
            torch.testing.assert_close(batched.mask_logits[i], alone.mask_logits[0])
            torch.testing.assert_close(batched.class_logits[i], alone.class_logits[0])


def _trainable_names(adapter: str) -> set[str]:
    model = build_model(tiny_config(adapter=adapter, in_channels=5, band_init=(2, 1, 0)))
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_trainable_sets_per_adapter() -> None:
    conv = _trainable_names("conv-lora")
    assert all(n.startswith(("band_adapter.", "mask_decoder.")) or ".attn.qkv." in n for n in conv)
    assert {n for n in conv if ".attn.qkv." in n} and not any(".base." in n for n in conv)
    assert any(".gate.w_gate" in n for n in conv) and any(".experts.7.conv" in n for n in conv)
    assert not any("iou_prediction" in n or "prompt_encoder" in n for n in conv)
    lora = _trainable_names("lora")
    assert {n for n in lora if ".attn.qkv." in n} == {
        n for n in conv if n.endswith(("lora_A", "lora_B"))
    }
    decoder = _trainable_names("decoder")
    assert all(n.startswith(("band_adapter.", "mask_decoder.")) for n in decoder)
    full = _trainable_names("full")
    assert any(n.startswith("image_encoder.patch_embed") for n in full)
    assert not any(n.startswith("prompt_encoder") for n in full)


def test_optimizer_step_changes_only_trainable_tensors(tiny_sam_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(image_size=128, in_channels=5, band_init=(2, 1, 0))
    model = build_model(cfg, tiny_sam_path).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.randint(0, 4, (2, 128, 128))
    loss = build_criterion("hungarian", 4)(model(torch.randn(2, 5, 128, 128)), labels)["loss"]
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed <= trainable
    assert any(".lora_A" in k for k in changed) and any(".lora_B" in k for k in changed)
    assert any(k.startswith("band_adapter.") for k in changed)
    assert any(k.startswith("mask_decoder.transformer.") for k in changed)


def test_band_adapter_passes_chosen_bands_through() -> None:
    x = torch.randn(2, 7, 8, 8)
    torch.testing.assert_close(BandAdapter(7, (3, 2, 1))(x), x[:, [3, 2, 1]])
    single = BandAdapter(1)(x[:, :1])
    torch.testing.assert_close(single, x[:, :1].expand(-1, 3, -1, -1))
    model = build_model(tiny_config(adapter="decoder"))
    assert isinstance(model.band_adapter, torch.nn.Identity)


@pytest.mark.parametrize("num_classes", [1, 4])
def test_predict_proba_at_input_resolution(num_classes: int) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(image_size=128, num_classes=num_classes, in_channels=4))
    proba = model.eval().predict_proba(torch.randn(2, 4, 96, 96))
    k = 2 if num_classes == 1 else num_classes
    assert model.num_outputs == k
    assert proba.shape == (2, k, 96, 96) and not proba.requires_grad
    torch.testing.assert_close(proba.sum(1), torch.ones(2, 96, 96))
    assert float(proba.min()) >= 0


def test_wrong_inputs_and_configs_are_refused() -> None:
    model = build_model(tiny_config(image_size=64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ConfigError, match="multiple of 16"):
        tiny_config(image_size=100)
    with pytest.raises(ConfigError, match="band_init"):
        tiny_config(in_channels=4, band_init=(0, 1, 4))
    with pytest.raises(ConfigError, match="unknown keys"):
        type(tiny_config()).from_dict({**tiny_config().to_dict(), "depth": 3})


def test_auto_token_init_copies_sams_token_from_a_checkpoint(
    tiny_sam_path: Path, tmp_path: Path
) -> None:
    assert ModelConfig().mask_token_init == "auto"
    state = torch.load(tiny_sam_path, weights_only=True)
    model = build_model(tiny_config(num_classes=3), tiny_sam_path)
    assert model.config.mask_token_init == "copy"
    tokens = model.mask_decoder.mask_tokens.weight
    assert torch.equal(tokens, state["mask_decoder.mask_tokens.weight"][:1].expand(3, -1))
    folder = save_adapter(model, tmp_path / "run", {})
    assert read_metadata(folder)["config"]["mask_token_init"] == "copy"
    loaded, _ = load_adapter(folder, tiny_sam_path)
    assert loaded.config == model.config
    load_adapter_into(build_model(tiny_config(num_classes=3), tiny_sam_path), folder)


def test_auto_token_init_adds_noise_to_an_untrained_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(num_classes=3))
    assert model.config.mask_token_init == "copy+noise"
    tokens = model.mask_decoder.mask_tokens.weight
    assert not torch.equal(tokens[1], tokens[0]) and not torch.equal(tokens[2], tokens[1])
    torch.manual_seed(0)
    explicit = build_model(tiny_config(num_classes=3, mask_token_init="copy+noise"))
    assert torch.equal(explicit.mask_decoder.mask_tokens.weight, tokens)
    folder = save_adapter(model, tmp_path / "run", {})
    assert read_metadata(folder)["config"]["mask_token_init"] == "copy+noise"
    loaded, _ = load_adapter(folder)
    assert loaded.config == model.config
    assert torch.equal(loaded.mask_decoder.mask_tokens.weight, tokens)
