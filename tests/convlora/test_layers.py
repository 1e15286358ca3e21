"""LoRA and Conv-LoRA layers: identity at step 0, merging, expert dispatch, gating."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convlora.aux_loss import pop_aux_loss
from convlora.layers import ConvLoRALinear, LoRALinear, NoisyTopOneGate
from convlora.layers.gate import cv_squared


def _linear(seed: int = 0, fan_in: int = 16, fan_out: int = 48) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(fan_in, fan_out)


def _routed_conv_lora(gate: str = "hard") -> ConvLoRALinear:
    """A Conv-LoRA layer with trained-looking B and gate, so several experts are used."""
    layer = ConvLoRALinear(_linear(), rank=3, alpha=32, experts=4, gate=gate)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.gate.w_gate.normal_(std=3.0)
    return layer.eval()


def test_lora_is_identity_at_init_and_merges() -> None:
    base = _linear()
    layer = LoRALinear(base, rank=3, alpha=32)
    x = torch.randn(2, 5, 5, 16)
    reference = base(x)
    assert torch.equal(layer(x), reference)
    assert not base.weight.requires_grad and layer.lora_A.requires_grad
    with torch.no_grad():
        layer.lora_B.normal_()
    adapted = layer(x)
    assert not torch.allclose(adapted, reference)
    layer.merge()
    torch.testing.assert_close(layer(x), adapted, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, _linear().weight)


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_conv_lora_is_identity_at_init(gate: str) -> None:
    base = _linear()
    layer = ConvLoRALinear(base, gate=gate).train()
    for x in (torch.randn(3, 7, 7, 16), torch.randn(2, 49, 16)):
        y = layer(x)
        assert y.shape == x.shape[:-1] + (48,)
        assert torch.equal(y, base(x))
        assert layer.aux_loss is not None and layer.aux_loss.dim() == 0


def test_conv_lora_defaults_and_parameter_count() -> None:
    layer = ConvLoRALinear(nn.Linear(1280, 3840))
    assert (layer.rank, layer.alpha, len(layer.experts)) == (3, 32.0, 8)
    assert [e.scale for e in layer.experts] == list(range(1, 9))
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 16_080  # per ViT-H block, as in the method notes
    assert torch.count_nonzero(layer.gate.w_gate) == 0
    assert torch.count_nonzero(layer.gate.w_noise) == 0


def test_conv_lora_rejects_non_square_tokens() -> None:
    with pytest.raises(ValueError, match="square"):
        ConvLoRALinear(_linear())(torch.randn(1, 10, 16))


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_dispatch_equals_per_window_loop(gate: str) -> None:
    layer = _routed_conv_lora(gate)
    x = torch.randn(12, 7, 7, 16)
    y = layer(x)
    z = (x @ layer.lora_A.T).permute(0, 3, 1, 2)
    routing = layer.gate(z.mean(dim=(2, 3)))
    assert len(set(routing.index.tolist())) >= 3
    for i in range(len(x)):
        zi = z[i : i + 1]
        e = layer.experts[int(routing.index[i])](zi)
        if gate == "soft":
            e = e * routing.prob[i]
        zi = (zi + e).permute(0, 2, 3, 1)
        yi = layer.base(x[i : i + 1]) + (zi @ layer.lora_B.T) * layer.scaling
        torch.testing.assert_close(y[i : i + 1], yi, rtol=1e-5, atol=1e-5)


def test_eval_routing_at_init_is_expert_zero() -> None:
    gate = NoisyTopOneGate(3, 8).eval()
    routing = gate(torch.randn(10, 3))
    assert routing.index.tolist() == [0] * 10


def test_gate_aux_loss_matches_official_formula() -> None:
    torch.manual_seed(0)
    gate = NoisyTopOneGate(3, 4).train()
    with torch.no_grad():
        gate.w_gate.normal_()
        gate.w_noise.normal_()
    features = torch.randn(32, 3)
    torch.manual_seed(1)
    routing = gate(features)
    # the official MoEGate, written out with torch.distributions for the normal CDF
    torch.manual_seed(1)
    clean = features @ gate.w_gate
    std = nn.functional.softplus(features @ gate.w_noise) + 1e-2
    noisy = clean + torch.randn_like(clean) * std
    top_values, top_indices = noisy.topk(2, dim=1)
    gates = torch.zeros_like(noisy).scatter(1, top_indices[:, :1], 1.0)
    normal = torch.distributions.Normal(0.0, 1.0)
    is_in = noisy > top_values[:, 1:2]
    prob = torch.where(
        is_in,
        normal.cdf((clean - top_values[:, 1:2]) / std),
        normal.cdf((clean - top_values[:, 0:1]) / std),
    )
    expected = 1e-2 * (cv_squared(gates.sum(0)) + cv_squared(prob.sum(0)))
    assert torch.equal(routing.index, top_indices[:, 0])
    torch.testing.assert_close(routing.aux_loss, expected)
    assert float(cv_squared(torch.tensor([5.0]))) == 0.0


def test_hard_gate_learns_only_from_aux_loss_soft_gate_from_task_loss() -> None:
    x = torch.randn(6, 7, 7, 16)
    grads = {}
    for gate in ("hard", "soft"):
        layer = _routed_conv_lora(gate).train()
        task = layer(x).square().mean()
        layer.aux_loss = None
        (w_gate_grad,) = torch.autograd.grad(task, layer.gate.w_gate, allow_unused=True)
        grads[gate] = w_gate_grad
    assert grads["hard"] is None or torch.count_nonzero(grads["hard"]) == 0
    assert torch.count_nonzero(grads["soft"]) > 0
    layer = _routed_conv_lora("hard").train()
    layer(x)
    aux = pop_aux_loss(layer)
    aux.backward()
    assert torch.count_nonzero(layer.gate.w_gate.grad) > 0
    assert layer.aux_loss is None and float(pop_aux_loss(layer)) == 0.0
