"""The end-to-end segmentation SAM: band adapter, adapted image encoder, prompt-free decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from convlora.aux_loss import pop_aux_loss
from convlora.band_adapter import build_band_adapter
from convlora.config import ModelConfig
from convlora.decoder import SegmentationMaskDecoder
from convlora.inject import ENCODER_ADAPTERS, adapter_parameters, inject_adapters
from convlora.postprocess import class_probabilities
from convlora.registry import build_sam_variant
from convlora.sam_checkpoint import load_sam_checkpoint
from convlora.sam_modeling import Sam


@dataclass
class SegmentationOutput:
    """Raw model outputs at the input's resolution.

    Attributes:
        mask_logits: (B, N, H, W) one mask logit map per mask token.
        class_logits: (B, N, K + 1) per-token class logits ("no object" last), None when binary.
        aux_loss: scalar Conv-LoRA load-balancing loss (0 for other adapters).
    """

    mask_logits: torch.Tensor
    class_logits: torch.Tensor | None
    aux_loss: torch.Tensor


class SegmentationSAM(nn.Module):
    """SAM fine-tuned end to end for binary or multi-class semantic segmentation.

    `sam_checkpoint_sha256` names the SAM checkpoint `sam` was loaded from (None: untrained
    weights); it resolves `mask_token_init="auto"`, and `config` keeps the resolved value. The
    frozen prompt encoder is fed no prompt; the image encoder is frozen except for its
    adapters (all of it trains with `adapter="full"`); the band adapter and the mask decoder
    (without its IoU head) train. Inputs are per-band normalised (z-scored) images; SAM's own
    pixel mean and std are not applied.
    """

    def __init__(
        self, config: ModelConfig, sam: Sam, sam_checkpoint_sha256: str | None = None
    ) -> None:
        super().__init__()
        config = config.resolved(pretrained=sam_checkpoint_sha256 is not None)
        self.config = config
        self.sam_checkpoint_sha256 = sam_checkpoint_sha256
        self.band_adapter = build_band_adapter(config.in_channels, config.band_init)
        self.image_encoder = sam.image_encoder
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = SegmentationMaskDecoder(
            sam.mask_decoder,
            num_mask_tokens=config.mask_tokens,
            num_classes=None if config.binary else config.num_classes,
            token_noise=1.0 if config.mask_token_init == "copy+noise" else 0.0,
        )
        if config.adapter in ENCODER_ADAPTERS:
            inject_adapters(
                self.image_encoder,
                config.adapter,
                targets=config.targets,
                rank=config.rank,
                alpha=config.alpha,
                experts=config.experts,
                gate=config.gate,
            )
        self._set_trainable()

    @property
    def num_outputs(self) -> int:
        """K: classes per pixel returned by `predict_proba` (2 in binary mode)."""
        return self.config.num_outputs

    def _set_trainable(self) -> None:
        self.requires_grad_(False)
        self.band_adapter.requires_grad_(True)
        self.mask_decoder.requires_grad_(True)
        if self.config.adapter == "full":
            self.image_encoder.requires_grad_(True)
        for _, param in adapter_parameters(self.image_encoder):
            param.requires_grad_(True)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors that training changes (what an adapter checkpoint stores)."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def forward(self, images: torch.Tensor) -> SegmentationOutput:
        """Segment a batch of normalised images (B, in_channels, H, W) of any size."""
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected images (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}"
            )
        size = tuple(images.shape[-2:])
        side = self.config.image_size
        x = images
        if size != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = self.band_adapter(x)
        embeddings = self.image_encoder(x)
        aux_loss = pop_aux_loss(self.image_encoder, device=embeddings.device)
        _, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
        masks, class_logits = self.mask_decoder(
            embeddings, self.prompt_encoder.get_dense_pe(), dense
        )
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        return SegmentationOutput(mask_logits=masks, class_logits=class_logits, aux_loss=aux_loss)

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K, H, W) at the input's resolution, summing to 1 over K.

        Runs in the module's current mode; call `eval()` first for deterministic routing.
        """
        out = self(images)
        return class_probabilities(out.mask_logits, out.class_logits)


def build_model(cfg: ModelConfig, sam_checkpoint: str | Path | None = None) -> SegmentationSAM:
    """Build a SegmentationSAM, loading an official SAM checkpoint when one is given.

    Without a checkpoint the SAM weights are random (right for `tiny`, for shape-only work on
    the meta device, or with `adapter="full"` training from scratch). `mask_token_init="auto"`
    becomes "copy" with a checkpoint and "copy+noise" without; the model's `config` (and so a
    saved adapter's) records the resolved value.
    """
    sam = build_sam_variant(cfg.sam_variant, cfg.image_size)
    sha256 = None
    if sam_checkpoint is not None:
        sha256 = load_sam_checkpoint(sam, sam_checkpoint, cfg.sam_variant)
    return SegmentationSAM(cfg, sam, sam_checkpoint_sha256=sha256)
