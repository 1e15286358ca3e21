"""SDPA attention computes segment-anything's attention, and official checkpoints still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention
from torch.utils._python_dispatch import TorchDispatchMode

from convlora.attention import SDPAAttention, rel_pos_bias
from convlora.model import build_model
from convlora.registry import build_sam_variant
from tests.support.tiny_sam import randomize_, tiny_config


def assert_close_fp32(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to fp32 rounding: 1e-5 of the tensor's largest magnitude."""
    scale = max(float(expected.abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale)


def _outputs_and_grads(attention: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = attention(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    params = [p for _, p in sorted(attention.named_parameters())]
    grads = torch.autograd.grad((out * weights).sum(), [x, *params])
    return [out.detach(), *grads]


@pytest.mark.parametrize(
    ("input_size", "tokens", "use_rel_pos"),
    [
        ((7, 7), (7, 7), True),  # a window
        ((5, 9), (5, 9), True),  # a global block on a non-square, odd grid
        ((7, 7), (5, 5), True),  # tables resized to the grid, as segment-anything does
        (None, (6, 3), False),
    ],
    ids=["window", "global-odd", "resized-tables", "no-rel-pos"],
)
def test_sdpa_attention_equals_segment_anything_attention(
    input_size: tuple[int, int] | None, tokens: tuple[int, int], use_rel_pos: bool
) -> None:
    torch.manual_seed(0)
    original = Attention(48, num_heads=4, use_rel_pos=use_rel_pos, input_size=input_size)
    randomize_(original, seed=3, std=0.5)
    sdpa = SDPAAttention(original)
    assert sorted(sdpa.state_dict()) == sorted(original.state_dict())
    x = torch.randn(3, *tokens, 48)
    expected, actual = _outputs_and_grads(original, x), _outputs_and_grads(sdpa, x)
    for a, e in zip(actual, expected, strict=True):
        assert_close_fp32(a, e)


def test_registry_models_use_sdpa_with_the_official_keys() -> None:
    sdpa, original = build_sam_variant("tiny"), build_sam_variant("tiny", sdpa=False)
    assert all(isinstance(block.attn, SDPAAttention) for block in sdpa.image_encoder.blocks)
    assert all(type(block.attn) is Attention for block in original.image_encoder.blocks)
    shapes = {k: v.shape for k, v in sdpa.state_dict().items()}
    assert shapes == {k: v.shape for k, v in original.state_dict().items()}


def test_checkpoint_of_segment_anything_attention_loads_and_gives_its_outputs(
    tmp_path: Path,
) -> None:
    """A checkpoint saved from segment-anything's own modules (windowed and global blocks, with
    relative positions) loads strictly into our model, whose encoder then computes the same."""
    torch.manual_seed(0)
    original = randomize_(build_sam_variant("tiny", 128, sdpa=False), seed=4).eval()
    path = tmp_path / "sam_tiny_original.pth"
    torch.save(original.state_dict(), path)
    model = build_model(tiny_config(image_size=128, adapter="decoder"), path).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert_close_fp32(model.image_encoder(x), original.image_encoder(x))


def test_the_relative_position_mask_is_written_once() -> None:
    """The (L, L) mask is one broadcast sum, reshaped as a view: no copy of the whole mask (on
    the CPU, a copy took half of a vit_b global attention call)."""

    class Writes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.numel() == 2 * 3 * (6 * 5) ** 2:
                self.ops.append(func.overloadpacket.__name__)
            return out

    q = torch.randn(2, 3, 6 * 5, 8)
    with Writes() as writes:
        bias = rel_pos_bias(q, torch.randn(11, 8), torch.randn(9, 8), (6, 5))
    assert bias.shape == (2, 3, 30, 30) and bias.is_contiguous()
    assert [op for op in writes.ops if op not in ("view", "_unsafe_view", "reshape")] == ["add"]
