"""Types of the names `geo.finetune` imports on first use (read by lazy_loader and mypy)."""

from .config import FinetuneConfig as FinetuneConfig
from .dataset import TileDataset as TileDataset
from .train import FinetunePlan as FinetunePlan
from .train import check_finetune as check_finetune
from .train import train_on_store as train_on_store
