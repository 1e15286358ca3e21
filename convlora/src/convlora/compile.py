"""`torch.compile` for SegmentationSAM, in place: the whole forward as one graph, or region by
region (each image-encoder block, and the mask decoder, on its own).

The model has no graph break (the Conv-LoRA dispatch has fixed shapes on accelerators and is one
opaque operator on the CPU), so `fullgraph=True` holds either way. Compiling in place
(`nn.Module.compile`) keeps the model object and its state-dict keys, so checkpoints,
`predict_proba` and DDP work as before.

Regional compilation keeps compile time from growing with depth: blocks of one kind (windowed or
global attention) share one compiled graph, so ViT-H's 32 blocks compile as about as many graphs
as the tiny SAM's 4. Measured on the 2-core CPU VM (inductor, no compile cache, the Conv-LoRA
training step at 64 px): the first compiled step took 41.5 s region by region against 127.2 s as
one graph for ViT-H (38 s against 73 s for ViT-B), and later steps took the same time either way.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from convlora.decoder import SegmentationMaskDecoder
from convlora.sam_modeling import ImageEncoderViT

INDUCTOR_OPTIONS = {"fallback_random": True}
"""Random ops (Conv-LoRA's gating noise) call PyTorch's own kernels, so a compiled model draws the
same numbers from the same generator state as the eager one."""


def regions(model: nn.Module) -> list[nn.Module]:
    """The parts regional compilation compiles on their own: every block of each SAM image
    encoder in `model`, then each mask decoder (the rest, patch embedding and neck, runs
    eagerly). Empty for a model without them."""
    blocks = [b for m in model.modules() if isinstance(m, ImageEncoderViT) for b in m.blocks]
    decoders = [m for m in model.modules() if isinstance(m, SegmentationMaskDecoder)]
    return [*blocks, *decoders]


def regional_by_default(model: nn.Module) -> bool:
    """Whether `compile_in_place` compiles `model` region by region unless told: on
    accelerators when it has regions."""
    return _on_accelerator(model) and bool(regions(model))


def _on_accelerator(model: nn.Module) -> bool:
    """Whether the device of `model`'s first parameter is not the CPU."""
    parameter = next(model.parameters(), None)
    return parameter is not None and parameter.device.type != "cpu"


def compile_in_place(
    model: nn.Module,
    backend: str = "inductor",
    *,
    regional: bool | None = None,
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Compile `model` in place and return it: region by region (`regions`) or the whole
    forward as one graph.

    `regional` defaults to True on accelerators, where ViT-H's whole training graphs took over
    five minutes to compile on an H200 machine, and to False on the CPU, where the benchmarks
    measure the whole graph; a model without regions compiles whole. With inductor, a `mode`
    (`"max-autotune"`, `"reduce-overhead"`: CUDA graphs) and `options` (e.g.
    `{"triton.cudagraphs": True}`) join `INDUCTOR_OPTIONS` (torch.compile takes a mode or options,
    not both); other backends take the mode as it is and no options. `backend` and `kwargs` (e.g.
    `dynamic=False`) go to `torch.compile`. The first call of each input shape and mode (train /
    eval) compiles, which takes a while (minutes for a ViT-B on a small CPU); later calls run the
    compiled code.
    """
    if backend == "inductor":
        kwargs["options"] = {**INDUCTOR_OPTIONS, **_mode_options(mode), **(options or {})}
    elif mode:
        kwargs["mode"] = mode
    parts = regions(model)
    if regional is None:
        regional = _on_accelerator(model)
    for part in parts if regional and parts else [model]:
        part.compile(fullgraph=True, backend=backend, **kwargs)
    return model


def _mode_options(mode: str | None) -> dict[str, Any]:
    """The inductor options a torch.compile `mode` stands for (none without a mode)."""
    if not mode:
        return {}
    from torch._inductor import list_mode_options  # heavy: only when a mode is asked for

    return dict(list_mode_options(mode))


def compile_for_inference(
    model: nn.Module, backend: str = "inductor", *, regional: bool | None = None, **kwargs: Any
) -> nn.Module:
    """Put a SegmentationSAM in eval mode and compile it in place for prediction
    (`compile_in_place`).

    `model(images)` and `model.predict_proba(images)` then run the compiled code; use it under
    `torch.inference_mode()` (and bf16 autocast on CUDA) as the eager model. Returns `model`.
    """
    return compile_in_place(model.eval(), backend=backend, regional=regional, **kwargs)
