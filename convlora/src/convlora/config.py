"""Model configuration: one dataclass that fully describes a SegmentationSAM."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from convlora.errors import ConvLoRAInputError

SAM_VARIANTS = ("vit_b", "vit_l", "vit_h", "tiny")
ADAPTERS = ("conv-lora", "lora", "decoder", "full")
GATES = ("hard", "soft")
TARGETS = ("qkv", "proj", "mlp")
TOKEN_INITS = ("auto", "copy", "copy+noise")
LOSSES = ("hungarian", "semantic")
DEFAULT_LOSS = "hungarian"
IGNORE_INDEX = 255
"""Label value that marks pixels no loss or metric counts (nodata, unlabelled, unmapped)."""


class ConfigError(ConvLoRAInputError):
    """A model configuration value is invalid."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a SegmentationSAM (weights aside).

    Args:
        sam_variant: "vit_b", "vit_l", "vit_h" or "tiny".
        image_size: side of the square image fed to SAM's encoder, a multiple of 16.
        adapter: "conv-lora", "lora", "decoder" (decoder only) or "full" (all trainable).
        rank: LoRA rank r.
        alpha: LoRA alpha; the low-rank update is scaled by alpha / rank.
        experts: number M of Conv-LoRA experts (scales 1..M).
        gate: "hard" (official: the gate value does not scale the expert output) or "soft".
        targets: encoder linears that get adapters, among "qkv", "proj", "mlp".
        num_classes: K classes counting background; 1 means binary single-mask mode.
        num_mask_tokens: decoder queries; None gives K (multi-class) or 1 (binary).
        mask_token_init: "copy" (official: every mask token a copy of SAM's mask token 0),
            "copy+noise" (tokens after the first get Gaussian noise at the token's own scale,
            so that a per-pixel loss, which cannot break the symmetry itself, can train them) or
            "auto" (the default): "copy" when the model starts from a SAM checkpoint,
            "copy+noise" when its encoder starts untrained. `build_model` resolves it, so a
            model's config (and a saved adapter's) holds "copy" or "copy+noise".
        in_channels: input bands; a band adapter maps them to SAM's 3 channels.
        band_init: 3 input-band indices initially passed to SAM's R, G, B, or None.
    """

    sam_variant: str = "vit_b"
    image_size: int = 1024
    adapter: str = "conv-lora"
    rank: int = 3
    alpha: float = 32.0
    experts: int = 8
    gate: str = "hard"
    targets: tuple[str, ...] = ("qkv",)
    num_classes: int = 1
    num_mask_tokens: int | None = None
    mask_token_init: str = "auto"
    in_channels: int = 3
    band_init: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.band_init is not None:
            object.__setattr__(self, "band_init", tuple(int(b) for b in self.band_init))
        self._validate()

    def _validate(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"model config: {message}")

        check(
            self.sam_variant in SAM_VARIANTS,
            f"sam_variant {self.sam_variant!r} not in {SAM_VARIANTS}",
        )
        check(
            self.image_size >= 16 and self.image_size % 16 == 0,
            f"image_size {self.image_size} must be a positive multiple of 16",
        )
        check(self.adapter in ADAPTERS, f"adapter {self.adapter!r} not in {ADAPTERS}")
        check(self.gate in GATES, f"gate {self.gate!r} not in {GATES}")
        check(self.rank >= 1, f"rank {self.rank} must be >= 1")
        check(self.experts >= 1, f"experts {self.experts} must be >= 1")
        check(
            len(self.targets) > 0 and set(self.targets) <= set(TARGETS),
            f"targets {list(self.targets)} must be a non-empty subset of {list(TARGETS)}",
        )
        check(self.num_classes >= 1, f"num_classes {self.num_classes} must be >= 1")
        if self.num_mask_tokens is not None:
            check(self.num_mask_tokens >= 1, "num_mask_tokens must be >= 1")
            check(
                self.num_classes > 1 or self.num_mask_tokens == 1,
                "binary mode (num_classes=1) uses exactly one mask token",
            )
        check(
            self.mask_token_init in TOKEN_INITS,
            f"mask_token_init {self.mask_token_init!r} not in {TOKEN_INITS}",
        )
        check(self.in_channels >= 1, f"in_channels {self.in_channels} must be >= 1")
        if self.band_init is not None:
            check(len(self.band_init) == 3, f"band_init {list(self.band_init)} needs 3 indices")
            check(
                all(0 <= b < self.in_channels for b in self.band_init),
                f"band_init {list(self.band_init)} out of range for {self.in_channels} bands",
            )

    @property
    def binary(self) -> bool:
        """True in single-mask binary mode."""
        return self.num_classes == 1

    @property
    def mask_tokens(self) -> int:
        """Number of decoder mask tokens actually used."""
        if self.num_mask_tokens is not None:
            return self.num_mask_tokens
        return 1 if self.binary else self.num_classes

    @property
    def num_outputs(self) -> int:
        """Number of class probabilities predicted per pixel (2 in binary mode)."""
        return 2 if self.binary else self.num_classes

    def resolved(self, pretrained: bool) -> ModelConfig:
        """This config with `mask_token_init="auto"` made concrete: "copy" for a model that
        starts from a SAM checkpoint (`pretrained`), "copy+noise" for an untrained encoder."""
        if self.mask_token_init != "auto":
            return self
        return replace(self, mask_token_init="copy" if pretrained else "copy+noise")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = asdict(self)
        out["targets"] = list(self.targets)
        out["band_init"] = None if self.band_init is None else list(self.band_init)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"model config: unknown keys {unknown}")
        return cls(**data)
