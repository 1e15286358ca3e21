"""Metrics of a trained adapter on a labelled tile store, measured as prediction uses it."""

from __future__ import annotations

from typing import Any

from convlora.checkpoint import load_adapter
from convlora.devices import resolve_device
from convlora.errors import ConvLoRAInputError
from convlora.train import evaluate
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.evaluate.config import EvaluateConfig
from geo.finetune.dataset import TileDataset


def check_compatible(store: StoreInfo, metadata: AdapterMetadata) -> None:
    """Refuse a store whose classes or bands differ from those the adapter was trained on."""
    names = [c.name for c in store.classes]
    trained = [c.name for c in metadata.classes]
    if names != trained:
        raise InputError(
            f"{store.path}: classes {names} differ from the model's {trained} "
            "(tile it with the model's class map)"
        )
    if store.bands != metadata.bands:
        raise InputError(
            f"{store.path}: bands {list(store.bands)} differ from the model's "
            f"{list(metadata.bands)} (tile it with --bands as for training)"
        )


def evaluate_on_store(config: EvaluateConfig) -> dict[str, Any]:
    """Per-class IoU, mIoU, F1 and pixel accuracy of a trained adapter on a labelled store.

    The store's tiles are normalised with the adapter's statistics, as at prediction time.
    """
    store = StoreInfo.read(config.store)
    metadata = AdapterMetadata.read(config.model)
    check_compatible(store, metadata)
    split = config.split or "all"
    if sum(sum(store.class_pixels.get(s, ())) for s in _splits(split)) == 0:
        raise InputError(f"{config.store}: no labelled pixel in split {split!r}")
    try:
        device = resolve_device(config.device)
        model, _ = load_adapter(config.model, sam_checkpoint=config.sam_checkpoint, device=device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    dataset = TileDataset(store, split, augment=False, normalization=metadata.normalization)
    if len(dataset) == 0:
        raise InputError(f"{config.store}: no tiles in split {split!r}")
    metrics = evaluate(
        model, dataset, batch_size=config.batch_size, device=device,
        class_names=[c.name for c in metadata.classes],
    )  # fmt: skip
    return {**metrics, "split": split, "tiles": len(dataset), "store": str(config.store)}


def _splits(split: str) -> tuple[str, ...]:
    return ("train", "val", "buffer") if split == "all" else (split,)
