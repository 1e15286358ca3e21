"""On a CUDA device: the sync-free Conv-LoRA, SDPA attention, a compiled model and the prediction
batch size. Skipped without CUDA; `make test-cuda` runs them on a GPU machine (fp32 comparisons
with TF32 off: they hold to fp32 rounding, not bit for bit, as the GPU's kernels differ)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention
from torch import nn

from convlora.attention import SDPAAttention
from convlora.compile import compile_in_place
from convlora.devices import inference_batch_size
from convlora.layers import ConvLoRALinear
from convlora.losses import build_criterion
from convlora.model import build_model
from tests.convlora.test_conv_lora_dispatch import EXPERTS, _pair, _run
from tests.support.tiny_sam import randomize_, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def fp32_without_tf32() -> Iterator[None]:
    """fp32 means fp32: no TF32 in matrix products or convolutions while a test runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal to fp32 rounding on a GPU: 1e-4 relative, 1e-5 of the largest magnitude absolute."""
    scale = max(float(expected.detach().abs().max()), 1.0)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale, msg=what)


def host_syncs(step: object) -> list[str]:
    """Run `step()` with CUDA's sync debug mode on; the warning of each host synchronisation."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()  # type: ignore[operator]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "called a synchronizing" in str(w.message)]


@pytest.mark.parametrize("gate", ["hard", "soft"])
def test_conv_lora_on_cuda_equals_the_grouped_reference(gate: str) -> None:
    """The default dispatch on CUDA (batched) against the reference's grouped dispatch, both on
    the GPU (the same gating noise): outputs, aux loss and every gradient, several batch sizes."""
    for batch in (1, 5, 12):
        reference, layer = _pair(gate, seed=batch, dispatch="auto")
        x = torch.randn(batch, 7, 7, 16, generator=torch.Generator().manual_seed(batch)).to(CUDA)
        expected = _run(reference.to(CUDA).train(), x, batch)
        actual = _run(layer.to(CUDA).train(), x, batch)
        for key in expected:
            close(actual[key], expected[key], f"batch {batch}: {key}")


def test_a_conv_lora_layer_trains_without_a_host_sync() -> None:
    layer = ConvLoRALinear(nn.Linear(16, 48), rank=3, experts=EXPERTS).to(CUDA).train()
    x = torch.randn(6, 7, 7, 16, device=CUDA, requires_grad=True)

    def step() -> None:
        y = layer(x)
        (y.sum() + layer.aux_loss).backward()

    step()  # warm-up: first-call set-up (cuBLAS, cuDNN) is not the layer's own
    assert host_syncs(step) == []


def test_a_conv_lora_sam_forward_and_backward_make_no_host_sync() -> None:
    """The whole model in bf16 autocast, as training runs it (the loss's matching is on the
    host by design and left out)."""
    torch.manual_seed(0)
    model = build_model(tiny_config(image_size=64, num_classes=3, experts=4)).to(CUDA).train()
    x = torch.randn(2, 3, 64, 64, device=CUDA)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        (
            out.mask_logits.float().square().mean() + out.class_logits.float().mean() + out.aux_loss
        ).backward()

    step()
    assert host_syncs(step) == []


def test_sdpa_attention_on_cuda_equals_segment_anything_attention() -> None:
    torch.manual_seed(0)
    original = randomize_(Attention(48, num_heads=4, use_rel_pos=True, input_size=(9, 9)), 3, 0.5)
    sdpa = SDPAAttention(original)
    original, sdpa = original.to(CUDA), sdpa.to(CUDA)
    x = torch.randn(3, 9, 9, 48, device=CUDA)
    close(sdpa(x), original(x), "attention output")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = sdpa(x).float()
    torch.testing.assert_close(bf16, original(x), rtol=0.05, atol=0.05 * float(bf16.abs().max()))


@pytest.mark.slow
def test_an_inductor_compiled_training_step_on_cuda_matches_eager() -> None:
    """Compiled as `--compile` compiles (region by region on CUDA, PyTorch's random kernels, so
    the same gating noise); a per-pixel loss, as Hungarian matching can flip on near-tied costs."""

    def model() -> nn.Module:
        torch.manual_seed(0)
        return build_model(tiny_config(image_size=32, num_classes=3, experts=2)).to(CUDA).train()

    eager, compiled = model(), model()
    compile_in_place(compiled)
    x = torch.randn(2, 3, 32, 32, device=CUDA)
    y = torch.randint(0, 3, (2, 32, 32), device=CUDA)
    results = []
    for net in (eager, compiled):
        torch.manual_seed(7)
        out = net(x)
        build_criterion("semantic", 3)(out, y)["loss"].backward()
        grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
        results.append({"mask_logits": out.mask_logits.detach(), **grads})
    assert len(results[0]) > 100 and results[0].keys() == results[1].keys()
    for key, value in results[0].items():
        torch.testing.assert_close(
            results[1][key], value, rtol=1e-3, atol=1e-4, msg=lambda m, k=key: f"{k}: {m}"
        )


def test_the_prediction_batch_fits_the_memory_it_was_sized_for() -> None:
    """With a budget of 0.2 % of the card's free memory, the chosen batch is a power of two
    and one forward of it stays within the budget (a first run on an H200 chose 128 tiles,
    416 MiB for a 285 MiB budget, from the probes' estimate alone: now checked and halved)."""
    torch.manual_seed(0)
    model = build_model(tiny_config(image_size=256, num_classes=3)).to(CUDA).eval()
    headroom = 0.002
    free, _ = torch.cuda.mem_get_info()
    cached = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
    batch = inference_batch_size(model, 3, 256, CUDA, maximum=1 << 20, headroom=headroom)
    assert batch >= 1 and batch & (batch - 1) == 0
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        model.predict_proba(torch.zeros(batch, 3, 256, 256, device=CUDA))
    peak = torch.cuda.max_memory_allocated() - before
    print(f"batch {batch}: peak {peak / 2**20:.0f} MiB of {(free + cached) * headroom / 2**20:.0f}")
    assert peak <= (free + cached) * headroom
    assert inference_batch_size(model, 3, 256, CUDA) <= 64
