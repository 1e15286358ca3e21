"""`torch.compile(fullgraph=True)` captures the whole Conv-LoRA SegmentationSAM, forward and
backward, with no graph break; the compiled model computes what the eager one does.

The graphs are compiled with the `aot_eager` / `eager` backends: they trace exactly what inductor
would compile (dynamo for the forward, AOTAutograd for the backward) without spending minutes in
C++ code generation on a CPU.
"""

from __future__ import annotations

import pytest
import torch

from convlora import compile_for_inference
from convlora.losses import build_criterion
from convlora.model import build_model
from tests.support.tiny_sam import tiny_config


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config(image_size=32, num_classes=3, experts=2))


def _step(net: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Outputs and gradients of one training step (gating noise from seed 7)."""
    torch.manual_seed(7)
    out = net(x)
    build_criterion("hungarian", 3)(out, y)["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"mask_logits": out.mask_logits.detach(), "aux": out.aux_loss.detach(), **grads}


@pytest.mark.slow
def test_a_training_step_compiles_as_one_graph_and_matches_eager() -> None:
    eager, compiled = _model().train(), _model().train()
    net = torch.compile(compiled, fullgraph=True, backend="aot_eager")  # raises on a graph break
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    expected, actual = _step(eager, eager, x, y), _step(net, compiled, x, y)
    assert expected.keys() == actual.keys() and len(expected) > 100
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_compile_for_inference_compiles_predict_proba_in_place() -> None:
    model, reference = _model(), _model().eval()
    keys = list(model.state_dict())
    assert compile_for_inference(model, backend="eager") is model
    assert not model.training and list(model.state_dict()) == keys
    x = torch.randn(2, 3, 32, 32)
    torch._dynamo.utils.counters.clear()
    with torch.inference_mode():
        proba = model.predict_proba(x)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
        torch.testing.assert_close(proba, reference.predict_proba(x))
