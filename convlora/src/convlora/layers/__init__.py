"""Adapter layers that replace an `nn.Linear` and return a tensor like it."""

from __future__ import annotations

from convlora.layers.conv_lora import ConvLoRALinear
from convlora.layers.gate import NoisyTopOneGate
from convlora.layers.lora import LoRALinear

__all__ = ["ConvLoRALinear", "LoRALinear", "NoisyTopOneGate"]
