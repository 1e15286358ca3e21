"""convlora: Conv-LoRA and LoRA adapters for Segment Anything, end-to-end multi-class SAM.

Reusable on its own (any imagery); imports only torch, segment_anything, safetensors and numpy.
"""

from __future__ import annotations

from convlora.aux_loss import pop_aux_loss
from convlora.band_adapter import BandAdapter
from convlora.checkpoint import (
    AdapterMismatchError,
    load_adapter,
    load_adapter_into,
    read_metadata,
    save_adapter,
)
from convlora.compile import compile_for_inference
from convlora.config import ConfigError, ModelConfig
from convlora.decoder import SegmentationMaskDecoder
from convlora.files import atomic_write_json, sha256_file
from convlora.info import parameter_report
from convlora.inject import inject_adapters
from convlora.layers import ConvLoRALinear, LoRALinear, NoisyTopOneGate
from convlora.losses import DEFAULT_LOSS, build_criterion
from convlora.metrics import IGNORE_INDEX, ConfusionMatrix
from convlora.model import SegmentationOutput, SegmentationSAM, build_model
from convlora.postprocess import class_probabilities, semantic_scores
from convlora.registry import SAM_VARIANTS, build_sam_variant
from convlora.sam_checkpoint import SamCheckpointError, load_sam_checkpoint

__all__ = [
    "IGNORE_INDEX",
    "atomic_write_json",
    "sha256_file",
    "DEFAULT_LOSS",
    "SAM_VARIANTS",
    "AdapterMismatchError",
    "BandAdapter",
    "ConfigError",
    "ConfusionMatrix",
    "ConvLoRALinear",
    "LoRALinear",
    "ModelConfig",
    "NoisyTopOneGate",
    "SamCheckpointError",
    "SegmentationMaskDecoder",
    "SegmentationOutput",
    "SegmentationSAM",
    "build_criterion",
    "build_model",
    "build_sam_variant",
    "class_probabilities",
    "compile_for_inference",
    "inject_adapters",
    "load_adapter",
    "load_adapter_into",
    "load_sam_checkpoint",
    "parameter_report",
    "pop_aux_loss",
    "read_metadata",
    "save_adapter",
    "semantic_scores",
]
