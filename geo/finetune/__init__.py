"""Fine-tuning: SAM with an adapter on a tile store (`FinetuneConfig` -> `train_on_store`)."""

from __future__ import annotations

from geo.finetune.config import FinetuneConfig
from geo.finetune.dataset import TileDataset
from geo.finetune.train import FinetunePlan, check_finetune, train_on_store

__all__ = ["FinetuneConfig", "FinetunePlan", "TileDataset", "check_finetune", "train_on_store"]
