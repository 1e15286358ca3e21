"""SAM's mask decoder turned into an end-to-end, prompt-free, batched segmentation head."""

from __future__ import annotations

import torch
from torch import nn

from convlora.sam_modeling import MaskDecoder


class SegmentationMaskDecoder(nn.Module):
    """N mask tokens, one shared hypernetwork MLP and an optional (C+1)-way class head.

    Built from a segment-anything `MaskDecoder` (sharing its transformer, IoU token, upscaling and
    first hypernetwork MLP); every new mask token starts as a copy of SAM's mask token 0 (the
    single-mask output token), with `token_noise` > 0 plus N(0, (token_noise * std(token 0))^2)
    noise on all tokens but the first. The IoU head, the other three mask tokens and their MLPs are
    dropped. `forward` handles B images without prompts in one batch: tokens are expanded to B and
    each image is used once (segment-anything's decoder repeats each image per prompt instead).
    """

    def __init__(
        self,
        sam_decoder: MaskDecoder,
        num_mask_tokens: int,
        num_classes: int | None,
        token_noise: float = 0.0,
    ) -> None:
        super().__init__()
        dim = sam_decoder.transformer_dim
        self.transformer_dim = dim
        self.num_mask_tokens = num_mask_tokens
        self.transformer = sam_decoder.transformer
        self.iou_token = sam_decoder.iou_token
        self.mask_tokens = nn.Embedding(num_mask_tokens, dim)
        with torch.no_grad():
            token0 = sam_decoder.mask_tokens.weight[:1]
            self.mask_tokens.weight.copy_(token0.expand(num_mask_tokens, -1))
            if token_noise > 0 and num_mask_tokens > 1:
                noise = torch.randn_like(self.mask_tokens.weight[1:])
                self.mask_tokens.weight[1:] += noise * token_noise * token0.std()
        self.output_upscaling = sam_decoder.output_upscaling
        self.output_hypernetwork = sam_decoder.output_hypernetworks_mlps[0]
        self.class_head = None if num_classes is None else nn.Linear(dim, num_classes + 1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Low-resolution mask logits (B, N, 4h, 4w) and class logits (B, N, C+1) or None.

        Args:
            image_embeddings: (B, D, h, w) image encoder output.
            image_pe: (1, D, h, w) dense positional encoding from the prompt encoder.
            dense_embeddings: (1 or B, D, h, w) "no mask" prompt embedding.
        """
        b, c, h, w = image_embeddings.shape
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = tokens.unsqueeze(0).expand(b, -1, -1)
        src = image_embeddings + dense_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos_src, tokens)
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = self.output_hypernetwork(mask_tokens_out)
        _, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, cu, hu * wu)).view(b, -1, hu, wu)
        class_logits = None if self.class_head is None else self.class_head(mask_tokens_out)
        return masks, class_logits
