"""Put LoRA / Conv-LoRA adapters on the linears of a SAM image encoder's blocks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from convlora.layers.conv_lora import ConvLoRALinear
from convlora.layers.lora import LoRALinear, LowRankAdapter
from convlora.sam_modeling import ImageEncoderViT

# Which linears of a segment-anything `Block` each target names.
TARGET_LINEARS: dict[str, tuple[str, ...]] = {
    "qkv": ("attn.qkv",),
    "proj": ("attn.proj",),
    "mlp": ("mlp.lin1", "mlp.lin2"),
}
ENCODER_ADAPTERS = ("conv-lora", "lora")


def make_adapter(
    base: nn.Linear, kind: str, rank: int, alpha: float, experts: int, gate: str
) -> LowRankAdapter:
    """Wrap one frozen linear in a LoRA ("lora") or Conv-LoRA ("conv-lora") layer."""
    if kind == "lora":
        return LoRALinear(base, rank=rank, alpha=alpha)
    if kind == "conv-lora":
        return ConvLoRALinear(base, rank=rank, alpha=alpha, experts=experts, gate=gate)
    raise ValueError(f"encoder adapter kind must be one of {ENCODER_ADAPTERS}, got {kind!r}")


def inject_adapters(
    encoder: ImageEncoderViT,
    kind: str,
    targets: Sequence[str] = ("qkv",),
    rank: int = 3,
    alpha: float = 32.0,
    experts: int = 8,
    gate: str = "hard",
) -> list[str]:
    """Replace the target linears of every block in `encoder.blocks`; return their names.

    The official Conv-LoRA adapts the fused `qkv` of every block (`targets=("qkv",)`).
    """
    unknown = sorted(set(targets) - set(TARGET_LINEARS))
    if unknown:
        raise ValueError(f"unknown adapter targets {unknown}; choose from {list(TARGET_LINEARS)}")
    names = []
    for index, block in enumerate(encoder.blocks):
        for target in targets:
            for path in TARGET_LINEARS[target]:
                parent_path, _, attr = path.rpartition(".")
                parent = block.get_submodule(parent_path)
                base = getattr(parent, attr)
                if not isinstance(base, nn.Linear):
                    raise TypeError(f"blocks.{index}.{path} is {type(base).__name__}, not Linear")
                setattr(parent, attr, make_adapter(base, kind, rank, alpha, experts, gate))
                names.append(f"blocks.{index}.{path}")
    return names


def adapter_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every adapter tensor under `module`, frozen base weights excluded."""
    params = []
    for prefix, layer in module.named_modules():
        if isinstance(layer, LowRankAdapter):
            for name, p in layer.named_parameters():
                if not name.startswith("base."):
                    params.append((f"{prefix}.{name}" if prefix else name, p))
    return params
