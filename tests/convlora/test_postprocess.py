"""Per-pixel class scores are combined in fp32, also under bf16 autocast (no bf16 ties)."""

from __future__ import annotations

import torch

from convlora.model import build_model
from convlora.postprocess import class_probabilities, semantic_scores
from tests.support.tiny_sam import tiny_config

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def _decoder_outputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 5, 16, 16, generator=g) * 4, torch.randn(2, 5, 4, generator=g) * 4


def test_scores_under_bf16_autocast_are_the_fp32_scores() -> None:
    mask_logits, class_logits = _decoder_outputs()
    expected = semantic_scores(mask_logits, class_logits)
    with torch.autocast(**BF16):
        scores = semantic_scores(mask_logits, class_logits)
        proba = class_probabilities(mask_logits, class_logits)
        binary = class_probabilities(mask_logits[:, :1], None)
        # what autocast does to the same einsum when it is not switched off
        in_bf16 = torch.einsum("bqc,bqhw->bchw", class_logits.softmax(-1)[..., :-1], mask_logits)
    assert in_bf16.dtype == torch.bfloat16
    assert scores.dtype == proba.dtype == binary.dtype == torch.float32
    assert torch.equal(scores, expected)
    assert torch.equal(proba, class_probabilities(mask_logits, class_logits))
    assert torch.equal(binary, class_probabilities(mask_logits[:, :1], None))


def test_predict_proba_under_bf16_autocast_is_fp32() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(image_size=32, num_classes=3)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), torch.autocast(**BF16):
        out = model(x)
        proba = model.predict_proba(x)
    assert out.mask_logits.dtype == torch.bfloat16  # the network itself ran in bf16
    assert proba.dtype == torch.float32
    assert torch.equal(proba, class_probabilities(out.mask_logits, out.class_logits))
