"""The Conv-LoRA experts' bicubic resizes: eager code calls `F.interpolate`, compiled code the
opaque operator; both give the same numbers, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convlora.layers.resize import bicubic_resize, resize, upsample


def _round_trip(x: torch.Tensor, scale: int, operator: bool) -> list[torch.Tensor]:
    """Up by `scale` and back to x's size: both outputs and the gradient of x."""
    x = x.clone().requires_grad_()
    h, w = x.shape[-2:]
    if operator:
        big = bicubic_resize(x, h * scale, w * scale, float(scale), float(scale))
        small = bicubic_resize(big, h, w, None, None)
    else:
        big = F.interpolate(x, scale_factor=scale, mode="bicubic")
        small = F.interpolate(big, size=(h, w), mode="bicubic")
    weights = torch.randn(small.shape, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((small * weights).sum(), x)
    return [big.detach(), small.detach(), grad]


@pytest.mark.parametrize("scale", [2, 3, 8])
def test_the_operator_equals_interpolate_bit_for_bit(scale: int) -> None:
    x = torch.randn(5, 3, 7, 9, generator=torch.Generator().manual_seed(scale))
    operator, reference = _round_trip(x, scale, True), _round_trip(x, scale, False)
    assert all(map(torch.equal, operator, reference))


def test_compiled_resizes_run_the_operator_and_eager_ones_do_not() -> None:
    graphs: list[str] = []

    def record(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> object:
        graphs.append(str(gm.graph))
        return gm.forward

    def round_trip(t: torch.Tensor) -> torch.Tensor:
        return resize(upsample(t, 4), (6, 6))

    x = torch.randn(2, 3, 6, 6)
    compiled = torch.compile(round_trip, fullgraph=True, backend=record)
    assert torch.equal(compiled(x), round_trip(x))
    assert graphs[0].count("convlora.bicubic_resize") == 2
    assert "upsample_bicubic2d" not in graphs[0]
