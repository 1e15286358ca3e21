"""`torch.compile(fullgraph=True)` captures the whole Conv-LoRA SegmentationSAM, forward and
backward, with no graph break, as one graph or region by region; the compiled model computes what
the eager one does.

The graphs are compiled with the `aot_eager` / `eager` backends: they trace exactly what inductor
would compile (dynamo for the forward, AOTAutograd for the backward) without spending minutes in
C++ code generation on a CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from convlora import compile_for_inference
from convlora.compile import compile_in_place, regions
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


def _graphs_of_a_training_step(model: torch.nn.Module) -> int:
    """Compile `model` region by region (tracing only) and count the graphs one step compiles."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compile_in_place(model, backend="aot_eager", regional=True)  # each region: no graph break
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    _step(model, model, x, y)
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


@pytest.mark.slow
def test_regional_compilation_matches_eager_and_does_not_grow_with_depth() -> None:
    eager, compiled = _model().train(), _model().train()
    assert len(regions(compiled)) == 5  # the tiny encoder's 4 blocks and the mask decoder
    compile_in_place(compiled, backend="aot_eager", regional=True)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    expected, actual = _step(eager, eager, x, y), _step(compiled, compiled, x, y)
    assert expected.keys() == actual.keys() and len(expected) > 100
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=1e-5, msg=key)
    deeper = _model().train()
    blocks = deeper.image_encoder.blocks
    for _ in range(3):  # three more windowed blocks, like the ones between the first and global
        blocks.insert(1, copy.deepcopy(blocks[1]))
    assert _graphs_of_a_training_step(deeper) == _graphs_of_a_training_step(_model().train())


def test_compile_is_regional_by_default_on_accelerators_only() -> None:
    """Accelerators compile region by region; the CPU compiles the whole graph (the meta device
    stands in for an accelerator: nothing runs, compiling is lazy)."""

    def compiled(module: torch.nn.Module) -> bool:
        return module._compiled_call_impl is not None

    on_cpu = compile_in_place(_model(), backend="eager")
    assert compiled(on_cpu) and not any(compiled(part) for part in regions(on_cpu))
    with torch.device("meta"):
        elsewhere = compile_in_place(_model(), backend="eager")
    assert not compiled(elsewhere) and all(compiled(part) for part in regions(elsewhere))


def test_a_compile_mode_joins_the_inductor_options() -> None:
    """torch.compile takes a mode or options, not both: `mode="max-autotune"` raised before it
    was turned into its options (compiling is lazy: nothing runs here)."""
    for mode in ("max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs"):
        model = compile_in_place(_model(), mode=mode, options={"triton.cudagraphs": False})
        assert model._compiled_call_impl is not None
    with pytest.raises(RuntimeError, match="Unrecognized mode"):
        compile_in_place(_model(), mode="fastest")


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
