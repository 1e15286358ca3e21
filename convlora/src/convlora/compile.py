"""`torch.compile` for SegmentationSAM: the whole forward as one graph, compiled in place.

The model has no graph break (the Conv-LoRA dispatch has fixed shapes on accelerators and is one
opaque operator on the CPU), so `fullgraph=True` holds. Compiling in place (`nn.Module.compile`)
keeps the model object and its state-dict keys, so checkpoints, `predict_proba` and DDP work as
before.
"""

from __future__ import annotations

from typing import Any

from torch import nn

INDUCTOR_OPTIONS = {"fallback_random": True}
"""Random ops (Conv-LoRA's gating noise) call PyTorch's own kernels, so a compiled model draws the
same numbers from the same generator state as the eager one."""


def compile_in_place(model: nn.Module, backend: str = "inductor", **kwargs: Any) -> nn.Module:
    """Compile `model`'s forward as one graph in place and return it.

    `backend` and `kwargs` (e.g. `mode="max-autotune"`, `dynamic=False`) go to `torch.compile`.
    The first call of each input shape and mode (train / eval) compiles, which takes a while
    (minutes for a ViT-B on a small CPU); later calls run the compiled code.
    """
    options = dict(INDUCTOR_OPTIONS) if backend == "inductor" else None
    model.compile(fullgraph=True, backend=backend, options=options, **kwargs)
    return model


def compile_for_inference(model: nn.Module, backend: str = "inductor", **kwargs: Any) -> nn.Module:
    """Put a SegmentationSAM in eval mode and compile its forward in place for prediction.

    `model(images)` and `model.predict_proba(images)` then run the compiled graph; use it under
    `torch.inference_mode()` (and bf16 autocast on CUDA) as the eager model. Returns `model`.
    """
    return compile_in_place(model.eval(), backend=backend, **kwargs)
