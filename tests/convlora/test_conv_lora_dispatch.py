"""Both Conv-LoRA dispatches (sync-free batched, grouped) compute what the grouped dispatch of the
reference implementation computes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from convlora.layers import ConvLoRALinear
from convlora.layers.grouped import grouped_experts
from convlora.model import build_model
from tests.support.per_sample import one_sample_at_a_time
from tests.support.reference_conv_lora import ConvLoRALinear as GroupedConvLoRALinear
from tests.support.tiny_sam import tiny_config

EXPERTS = 4


def _pair(
    gate: str, seed: int, dispatch: str = "batched"
) -> tuple[GroupedConvLoRALinear, ConvLoRALinear]:
    """The reference layer with trained-looking weights (several experts in use) and the new
    layer holding the same tensors."""
    torch.manual_seed(seed)
    options = {"rank": 3, "alpha": 32, "experts": EXPERTS, "gate": gate}
    reference = GroupedConvLoRALinear(nn.Linear(16, 48), **options)
    with torch.no_grad():
        reference.lora_B.normal_()
        reference.gate.w_gate.normal_(std=3.0)
        reference.gate.w_noise.normal_()
        for expert in reference.experts:
            expert.conv.bias.normal_(std=0.1)
    layer = ConvLoRALinear(nn.Linear(16, 48), **options)
    layer.load_state_dict(reference.state_dict())
    layer.dispatch = dispatch
    return reference, layer


def _run(layer: nn.Module, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Output, aux loss and the gradient of every parameter (zero where unused) and of x."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # the same gating noise for both layers
    y = layer(x)
    aux = layer.aux_loss
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.device)
    loss = (y * weights).sum() + aux
    named = [(n, p) for n, p in layer.named_parameters() if p.requires_grad] + [("x", x)]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    out = {"y": y.detach(), "aux": aux.detach()}
    for (name, p), g in zip(named, grads, strict=True):
        out[f"grad {name}".replace(".module.", ".")] = torch.zeros_like(p) if g is None else g
    return out


@pytest.mark.parametrize("dispatch", ["batched", "grouped"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_outputs_aux_loss_and_gradients_equal_the_grouped_dispatch_bit_for_bit(
    gate: str, train: bool, dispatch: str
) -> None:
    """Experts applied one sample at a time in both layers, so that only the dispatch differs."""
    experts_used = set()
    for seed in range(3):
        for batch in (1, 8):
            reference, layer = _pair(gate, seed, dispatch)
            reference.experts = one_sample_at_a_time(reference.experts)
            layer.experts = one_sample_at_a_time(layer.experts)
            reference.train(train), layer.train(train)
            x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(seed))
            expected, actual = _run(reference, x, seed), _run(layer, x, seed)
            assert expected.keys() == actual.keys()
            for key in expected:
                assert torch.equal(actual[key], expected[key]), (seed, batch, key)
            torch.manual_seed(seed)
            z = (x @ layer.lora_A.T).permute(0, 3, 1, 2)
            experts_used |= set(layer.gate(z.mean(dim=(2, 3))).index.tolist())
    assert len(experts_used) == EXPERTS


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_with_the_library_kernels_results_agree_to_rounding(gate: str) -> None:
    """Batched experts see other batches than the grouped ones: equal up to kernel rounding,
    and bit for bit when the batch holds a single window."""
    for batch in (1, 12):
        reference, layer = _pair(gate, seed=0, dispatch="batched")
        x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(1))
        expected, actual = _run(reference.train(), x, 2), _run(layer.train(), x, 2)
        for key in expected:
            if batch == 1:
                assert torch.equal(actual[key], expected[key]), key
            scale = float(expected[key].abs().max()) + 1e-12
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_the_grouped_dispatch_equals_the_reference_with_the_library_kernels(gate: str) -> None:
    for batch in (1, 12):
        reference, layer = _pair(gate, seed=0, dispatch="grouped")
        x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(1))
        expected, actual = _run(reference.train(), x, 2), _run(layer.train(), x, 2)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), key


def test_auto_groups_on_the_cpu_and_every_expert_still_gets_a_gradient() -> None:
    """In eager mode on the CPU each expert sees only its own samples (batched would show every
    expert all of them); experts nobody chose still receive a zero gradient."""
    _, layer = _pair("hard", seed=0, dispatch="auto")
    seen: list[int] = []
    for expert in layer.experts:
        expert.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    for batch in (12, 1):
        seen.clear()
        layer.zero_grad(set_to_none=True)
        x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(1))
        y = layer.train()(x)
        (y.sum() + layer.aux_loss).backward()
        assert sum(seen) == batch
        assert all(p.grad is not None for p in layer.experts.parameters())
    idle = [e for e in layer.experts if not float(e.conv.weight.grad.abs().sum())]
    assert seen == [1] and len(idle) == EXPERTS - 1


def test_forward_and_backward_need_no_values_on_the_host() -> None:
    """On the meta device tensors have shapes but no values: any `.tolist()`, `.item()` or
    data-dependent shape (bincount, nonzero, split by counts) would raise."""
    for cls in (ConvLoRALinear, GroupedConvLoRALinear):
        with torch.device("meta"):
            layer = cls(nn.Linear(16, 48), rank=3, experts=EXPERTS).train()
            x = torch.randn(6, 7, 7, 16, requires_grad=True)
        if cls is GroupedConvLoRALinear:
            with pytest.raises((RuntimeError, NotImplementedError)):
                layer(x)
            continue
        y = layer(x)
        (y.sum() + layer.aux_loss).backward()
        assert y.shape == (6, 7, 7, 48) and y.device.type == "meta"
        assert all(p.grad is not None for p in layer.experts.parameters())


def test_a_conv_lora_sam_trains_on_the_meta_device() -> None:
    """The whole model's training forward and backward on the meta device: no host read of a
    value anywhere (on CUDA, tests/convlora/test_cuda.py checks for host syncs directly)."""
    with torch.device("meta"):
        model = build_model(tiny_config(image_size=64, num_classes=3, experts=EXPERTS)).train()
        x = torch.randn(2, 3, 64, 64)
    out = model(x)
    (
        out.mask_logits.float().square().mean() + out.class_logits.float().mean() + out.aux_loss
    ).backward()
    assert out.mask_logits.shape == (2, 3, 64, 64) and out.mask_logits.device.type == "meta"
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_single_expert_has_no_gate_and_no_aux_loss() -> None:
    layer = ConvLoRALinear(nn.Linear(16, 48), rank=3, experts=1).train()
    assert layer.gate is None
    assert not any(name.startswith("gate.") for name, _ in layer.named_parameters())
    x = torch.randn(3, 7, 7, 16)
    y = layer(x)
    assert float(layer.aux_loss) == 0.0
    z = (x @ layer.lora_A.T).permute(0, 3, 1, 2)
    residual = layer.experts[0](z.contiguous())
    expected = layer.base(x) + ((z + residual).permute(0, 2, 3, 1) @ layer.lora_B.T) * 32 / 3
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_the_grouped_operator_equals_the_eager_grouped_dispatch_bit_for_bit(gate: str) -> None:
    """The opaque operator (what a compiled model runs) against the module-by-module dispatch:
    outputs and every gradient, unused experts' zeros included."""
    for batch in (1, 5, 12):
        _, eager = _pair(gate, seed=batch, dispatch="grouped")
        _, operator = _pair(gate, seed=batch, dispatch="grouped")
        operator._grouped = operator._grouped_operator  # what runs under torch.compile
        x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(batch))
        expected, actual = _run(eager.train(), x, batch), _run(operator.train(), x, batch)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), (batch, key)


def test_the_grouped_operator_passes_the_custom_operator_checks() -> None:
    """Fake (meta) kernel, autograd registration and schema agree with the real kernel."""
    _, layer = _pair("hard", seed=0)
    z = torch.randn(6, 3, 7, 7, requires_grad=True)
    index = torch.tensor([0, 2, 2, 1, 0, 2])
    convs = [expert.conv for expert in layer.experts]
    args = (z, index, [c.weight for c in convs], [c.bias for c in convs])
    torch.library.opcheck(grouped_experts, args)


def test_compiled_on_the_cpu_the_layer_keeps_grouped_dispatch_in_one_graph() -> None:
    graphs: list[str] = []

    def record(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Callable[..., object]:
        graphs.append(str(gm.graph))
        return gm.forward

    _, layer = _pair("hard", seed=0, dispatch="auto")
    x = torch.randn(5, 7, 7, 16, requires_grad=True)
    layer.train()
    compiled = torch.compile(layer, fullgraph=True, backend=record)
    torch.manual_seed(0)
    expected = layer(x)
    torch.manual_seed(0)
    actual = compiled(x)
    (actual.sum() + layer.aux_loss).backward()
    assert len(graphs) == 1 and "convlora.grouped_experts" in graphs[0]
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
    assert all(p.grad is not None for p in layer.experts.parameters())
