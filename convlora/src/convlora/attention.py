"""SAM's image-encoder attention through `F.scaled_dot_product_attention` (fused kernels).

segment-anything's `Attention` materialises the (B x heads, L, L) score matrix, adds the
decomposed relative-position terms and runs softmax and a second matmul. `SDPAAttention` computes
the same function with the relative-position terms as an additive mask, so PyTorch picks a fused
kernel (flash attention on the CPU, memory-efficient attention on CUDA). It holds the very same
tensors under the same names, so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convlora.sam_modeling import Attention, ImageEncoderViT


class SDPAAttention(nn.Module):
    """Multi-head attention with decomposed relative positions, like segment-anything's.

    Built from an existing `Attention` (sharing its `qkv`, `proj` and `rel_pos_h` / `rel_pos_w`);
    takes and returns (B, H, W, C) token maps.
    """

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.scale = attention.scale
        self.qkv = attention.qkv
        self.proj = attention.proj
        self.use_rel_pos = attention.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = attention.rel_pos_h
            self.rel_pos_w = attention.rel_pos_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, H x W, head_dim)
        bias = None
        if self.use_rel_pos:
            bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        projected: torch.Tensor = self.proj(out.transpose(1, 2).reshape(b, h, w, -1))
        return projected

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, use_rel_pos={self.use_rel_pos}"


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(size, size, head_dim) embeddings of the offsets i - j, as segment-anything's `get_rel_pos`
    for equal query and key sizes (a table of another length is resized linearly first)."""
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear"
        )
        rel_pos = resized.reshape(-1, length).permute(1, 0)
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


def rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """The decomposed relative-position terms (MViTv2) as an additive mask (B, heads, L, L).

    Entry (i, j) is q_i . R_h[h_i - h_j] + q_i . R_w[w_i - w_j] for query i = (h_i, w_i) and
    key j = (h_j, w_j), with the unscaled query, as in segment-anything's `add_decomposed_rel_pos`.
    """
    h, w = size
    b, heads, _, dim = q.shape
    r_q = q.reshape(b, heads, h, w, dim)
    table_h = rel_pos_table(h, rel_pos_h).to(q.dtype)
    table_w = rel_pos_table(w, rel_pos_w).to(q.dtype)
    # einsum returns permuted strides; made contiguous (L x size values), the (L, L) sum below
    # comes out contiguous and the reshape is a view, not a copy of the whole mask (measured on
    # the CPU, vit_b global block: 28 ms of 56 per attention call)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, table_h).contiguous()
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, table_w).contiguous()
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, h * w, h * w)


def use_sdpa_attention(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Replace the `Attention` of every block of a segment-anything image encoder in place."""
    for block in encoder.blocks:
        if isinstance(block.attn, Attention):
            block.attn = SDPAAttention(block.attn)
    return encoder
