"""SAM variants, built from segment-anything's own modules at any image size."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from convlora.attention import use_sdpa_attention
from convlora.config import ConfigError
from convlora.sam_modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256


@dataclass(frozen=True)
class SamVariant:
    """Shape of one SAM image encoder; the prompt encoder and mask decoder are SAM's."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    native_image_size: int = 1024


SAM_VARIANTS: dict[str, SamVariant] = {
    "vit_b": SamVariant("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamVariant("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamVariant("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # A small random-weight SAM for tests and CPU experiments: same decoder as SAM, a 4-block
    # encoder with one global block and windows that need padding (16 tokens -> 3 windows of 7).
    "tiny": SamVariant("tiny", 128, 4, 4, (3,), window_size=7, native_image_size=256),
}


def get_variant(name: str) -> SamVariant:
    """Look up a variant by name."""
    try:
        return SAM_VARIANTS[name]
    except KeyError:
        choices = list(SAM_VARIANTS)
        raise ConfigError(f"unknown SAM variant {name!r}; choose one of {choices}") from None


def build_sam_variant(name: str, image_size: int | None = None, *, sdpa: bool = True) -> Sam:
    """Build an untrained segment-anything `Sam` of the named variant for square `image_size` input.

    Its state-dict keys are those of the official checkpoints. `image_size` (default: the
    variant's native size) changes only the positional embedding and the global blocks'
    relative-position tables. With `sdpa` (the default) the encoder's attention runs through
    `F.scaled_dot_product_attention` (`convlora.attention.SDPAAttention`, same tensors and keys);
    `sdpa=False` keeps segment-anything's own `Attention`.
    """
    variant = get_variant(name)
    size = variant.native_image_size if image_size is None else image_size
    if size % PATCH_SIZE != 0 or size <= 0:
        raise ConfigError(f"image_size {size} must be a positive multiple of {PATCH_SIZE}")
    grid = size // PATCH_SIZE
    encoder = ImageEncoderViT(
        depth=variant.depth,
        embed_dim=variant.embed_dim,
        img_size=size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=variant.num_heads,
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=variant.global_attn_indexes,
        window_size=variant.window_size,
        out_chans=PROMPT_EMBED_DIM,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=PROMPT_EMBED_DIM,
        image_embedding_size=(grid, grid),
        input_image_size=(size, size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8
        ),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    if encoder.pos_embed is not None:
        # Untrained weights get a ViT-style positional embedding (SAM's code leaves it at zero).
        torch.nn.init.trunc_normal_(encoder.pos_embed, std=0.02)
    if sdpa:
        use_sdpa_attention(encoder)
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
