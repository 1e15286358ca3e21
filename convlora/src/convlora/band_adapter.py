"""Map N input bands to SAM's 3 input channels with a trainable 1x1 convolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BandAdapter(nn.Module):
    """A 1x1 conv from `in_channels` bands to 3 channels.

    With `band_init=[i, j, k]` output channels R, G, B start as exact copies of bands i, j, k;
    without it every output channel starts as the mean of all bands (for one band: the band
    copied to R, G and B). Bias starts at zero.
    """

    def __init__(self, in_channels: int, band_init: Sequence[int] | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.band_init = None if band_init is None else tuple(band_init)
        self.conv = nn.Conv2d(in_channels, 3, kernel_size=1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Pass-through (or band-mean) initialisation."""
        weight = torch.zeros_like(self.conv.weight)
        if self.band_init is None:
            weight.fill_(1.0 / self.in_channels)
        else:
            for out, band in enumerate(self.band_init):
                weight[out, band] = 1.0
        self.conv.weight.copy_(weight)
        assert self.conv.bias is not None  # built with a bias
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


def build_band_adapter(in_channels: int, band_init: Sequence[int] | None) -> nn.Module:
    """Identity for 3 bands without `band_init`, otherwise a BandAdapter."""
    if in_channels == 3 and band_init is None:
        return nn.Identity()
    return BandAdapter(in_channels, band_init)
