"""Small labelled datasets and `convlora.train.fit` runs with the tiny SAM, for the tests and the
processes they start (torchrun)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from convlora.config import ModelConfig
from convlora.train import TrainConfig, fit

SIZE = 32
CLASSES = [{"id": i, "name": n} for i, n in enumerate(["background", "crop", "water"])]
CLASS_NAMES = [c["name"] for c in CLASSES]


class Tiles(Dataset):
    """Small labelled tiles whose label is learnable from the image (class = band argmax).

    Every tile has an ignored strip and two invalid rows; the tiles in `ignored` are ignored
    entirely (no target at all, like a nodata tile).
    """

    def __init__(self, n: int, seed: int = 0, ignored: tuple[int, ...] = ()) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, SIZE, SIZE, generator=g)
        self.labels = self.images.argmax(1)
        self.labels[:, :4] = 255  # an ignored strip
        for i in ignored:
            self.labels[i] = 255
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        valid = torch.ones(SIZE, SIZE, dtype=torch.bool)
        valid[-2:] = False
        return {"image": self.images[i], "label": self.labels[i], "valid": valid, "index": i}

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def model_cfg(adapter: str = "lora") -> ModelConfig:
    return ModelConfig(sam_variant="tiny", image_size=SIZE, adapter=adapter, num_classes=3)


def train_cfg(**overrides: Any) -> TrainConfig:
    options: dict[str, Any] = dict(
        epochs=2, batch_size=1, accumulate=2, lr=1e-3, device="cpu", log_every=1
    )
    options.update(overrides)
    return TrainConfig(**options)


def run_fit(
    run: Path, train: Dataset | None = None, adapter: str = "lora", **overrides: Any
) -> dict[str, Any]:
    """`fit` a tiny untrained SAM with `adapter` on `train` (default: 6 tiles), validating on 2."""
    return fit(
        model_cfg(adapter), train_cfg(**overrides), train if train is not None else Tiles(6),
        Tiles(2, seed=1), run, metadata={"classes": CLASSES}, progress=False,
        class_names=CLASS_NAMES,
    )  # fmt: skip


def lines(run: Path) -> list[dict[str, Any]]:
    """The records of RUN/metrics.jsonl."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def step_losses(run: Path) -> list[float]:
    return [r["loss"] for r in lines(run) if r["kind"] == "step"]
