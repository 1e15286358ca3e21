"""Models for tests: a small deterministic toy model with adapter metadata for the prediction
machinery (tiny SAM checkpoints live in tests.support.tiny_sam)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from geo.contracts.adapter import AdapterMetadata
from tests.support.tiny_sam import tiny_config

CLASSES = [
    {"id": 0, "name": "background", "color": "#000000"},
    {"id": 1, "name": "field", "color": "#33a02c"},
    {"id": 2, "name": "water", "color": "#1f78b4"},
]


class ToyModel(nn.Module):
    """A fixed-seed conv net with zero padding plus a per-tile context term (the tile's mean
    features shift every pixel's logits, as SAM's global attention does), then a softmax.

    A brightness term makes it follow the image: bright pixels lean to class 1, dark ones to 2.
    """

    def __init__(self, in_channels: int, num_classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
            self.smooth = nn.AvgPool2d(5, stride=1, padding=2)
            self.head = nn.Conv2d(8, num_classes, 1)
            self.context = nn.Linear(8, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv1(images))
        h = self.smooth(torch.tanh(self.conv2(h)))
        bright = self.smooth(images.mean(dim=1, keepdim=True))
        lean = torch.cat([torch.zeros_like(bright), bright, -bright][: self.head.out_channels], 1)
        return 4.0 * lean + self.head(h) + self.context(h.mean(dim=(2, 3)))[:, :, None, None]

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(images), dim=1)


def metadata_for(
    path: Path,
    bands: list[int],
    tile_size: int = 128,
    classes: list[dict[str, Any]] | None = None,
    overlap: int | None = None,
) -> AdapterMetadata:
    """Adapter metadata for a model trained on `tile_size` px tiles of scenes like `path`,
    with band statistics over the scene's valid pixels."""
    with rasterio.open(path) as src:
        data = src.read(bands, masked=True).astype("float64")
    flat = [band.compressed() for band in data]
    classes = classes or CLASSES
    document = {
        "config": tiny_config(
            image_size=tile_size, num_classes=len(classes), in_channels=len(bands)
        ).to_dict(),
        "classes": classes,
        "bands": bands,
        "normalization": {
            "mean": [float(v.mean()) for v in flat],
            "std": [float(v.std()) for v in flat],
            "p2": [float(np.percentile(v, 2)) for v in flat],
            "p98": [float(np.percentile(v, 98)) for v in flat],
        },
        "tile_size": tile_size,
        "overlap": tile_size // 8 if overlap is None else overlap,
    }
    return AdapterMetadata.from_document(document, Path(path).with_suffix(".adapter.json"))
