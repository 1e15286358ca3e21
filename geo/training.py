"""Training and evaluation on a tile store: model settings and adapter metadata from its attrs."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from convlora.checkpoint import load_adapter
from convlora.config import ModelConfig
from convlora.devices import resolve_device
from convlora.sam_checkpoint import check_sam_checkpoint
from convlora.train import TrainConfig, evaluate, fit
from geo.dataset import TileDataset
from geo.errors import InputError
from geo.paths import check_output
from geo.store import read_attrs
from geo.windows import MAX_TILE_SIZE

logger = logging.getLogger(__name__)

SPLITS = {"train": 0, "val": 1}
_RGB_WORDS = (
    re.compile(r"\bred\b|^r$", re.IGNORECASE),
    re.compile(r"\bgreen\b|^g$", re.IGNORECASE),
    re.compile(r"\bblue\b|^b$", re.IGNORECASE),
)
# Band numbers such as "OLI_B4", "B04", "TM_B3": red, green, blue are 4, 3, 2 for Landsat 8/9 OLI
# and Sentinel-2 (the default), 3, 2, 1 for Landsat 4-7 TM/ETM+.
_NUMBERED = re.compile(r"^(?P<sensor>[a-z+]*)[_ -]?b(?:and)?[_ ]?0*(?P<number>\d+)$", re.IGNORECASE)
_SENSOR_RGB = {"tm": (3, 2, 1), "etm": (3, 2, 1), "etm+": (3, 2, 1)}


def _rgb_by_name(names: list[str]) -> list[int] | None:
    """Positions of the red, green and blue bands recognised from band names, or None."""
    by_word = [next((i for i, n in enumerate(names) if p.search(n)), None) for p in _RGB_WORDS]
    if None not in by_word:
        return by_word  # type: ignore[return-value]
    numbered = {}
    for i, name in enumerate(names):
        match = _NUMBERED.match(name.strip())
        if match:
            rgb = _SENSOR_RGB.get(match["sensor"].lower(), (4, 3, 2))
            numbered[int(match["number"])] = (i, rgb)
    if not numbered:
        return None
    rgb = next(iter(numbered.values()))[1]
    if all(n in numbered for n in rgb):
        return [numbered[n][0] for n in rgb]
    return None


def store_attrs(store: str | Path) -> dict[str, Any]:
    """A tile store's attributes; an InputError when `store` is not one."""
    attrs = read_attrs(store)
    if attrs is None:
        raise InputError(f"{store}: not a tile store (build one with `convlora-geo tile`)")
    return attrs


def band_init(attrs: dict[str, Any], rgb_bands: Sequence[int] | None = None) -> list[int] | None:
    """Store band positions that feed SAM's R, G, B channels at the start of training.

    `rgb_bands` are 1-based source band numbers (as in `tile --bands`); otherwise the bands named
    red, green and blue (or numbered like Landsat and Sentinel-2 bands: OLI_B4, B04, TM_B3) are
    used, else the first three. Three bands are taken in store order.
    """
    bands = [int(b) for b in attrs["bands"]]
    if rgb_bands is not None:
        missing = [b for b in rgb_bands if b not in bands]
        if len(rgb_bands) != 3 or missing:
            raise InputError(
                f"--rgb-bands {list(rgb_bands)}: give 3 source bands among the store's {bands}"
            )
        return [bands.index(b) for b in rgb_bands]
    if len(bands) == 3:
        return None
    found = _rgb_by_name([str(n) for n in attrs.get("band_names") or []])
    return found if found is not None else [i % len(bands) for i in range(3)]


def model_config(
    attrs: dict[str, Any],
    *,
    sam: str,
    adapter: str,
    image_size: int,
    rank: int = 3,
    experts: int = 8,
    alpha: float = 32.0,
    gate: str = "hard",
    mask_token_init: str = "copy",
    rgb_bands: Sequence[int] | None = None,
) -> ModelConfig:
    """The model for a store: its classes and bands, and the chosen SAM and adapter."""
    return ModelConfig(
        sam_variant=sam,
        image_size=image_size,
        adapter=adapter,
        rank=rank,
        alpha=alpha,
        experts=experts,
        gate=gate,
        mask_token_init=mask_token_init,
        num_classes=len(attrs["classes"]),
        in_channels=len(attrs["bands"]),
        band_init=band_init(attrs, rgb_bands),
    )


def adapter_metadata(attrs: dict[str, Any]) -> dict[str, Any]:
    """What prediction and evaluation need to use the adapter on new rasters like the store's."""
    return {
        "classes": attrs["classes"],
        "bands": attrs["bands"],
        "band_names": attrs.get("band_names"),
        "normalization": attrs["normalization"],
        "tile_size": attrs["tile_size"],
        "overlap": attrs.get("overlap"),
        "store_fingerprint": attrs.get("fingerprint"),
    }


def class_frequency_weights(store: str | Path, num_classes: int) -> list[float]:
    """Median-frequency class weights from the training tiles' labels (absent classes get 0)."""
    group = zarr.open_group(str(store), mode="r")
    split = np.asarray(group["split"][...])
    counts = np.zeros(num_classes, dtype=np.int64)
    for i in np.flatnonzero(split == SPLITS["train"]):
        labels = np.asarray(group["labels"][int(i)])
        counts += np.bincount(labels[labels < num_classes].ravel(), minlength=num_classes)
    freq = counts / max(counts.sum(), 1)
    present = freq > 0
    if not present.any():
        raise InputError(f"{store}: the training tiles hold no labelled pixels")
    weights = np.zeros(num_classes)
    weights[present] = np.median(freq[present]) / freq[present]
    return [round(float(w), 6) for w in weights]


def check_training(
    run_dir: str | Path, *, sam: str, sam_checkpoint: str | Path | None, image_size: int
) -> None:
    """Pre-flight check of a training run: `run_dir` can be written, the image size suits SAM,
    and the SAM checkpoint, if any, fits the variant (shapes only: its tensors are mapped, not
    read). Raises InputError or ConvLoRAInputError naming the input; writes nothing."""
    check_output(run_dir, into=True)
    if image_size < 16 or image_size % 16 or image_size > MAX_TILE_SIZE:
        raise InputError(f"--image-size {image_size}: give a multiple of 16 up to {MAX_TILE_SIZE}")
    if sam_checkpoint is not None:
        check_sam_checkpoint(sam_checkpoint, sam, image_size)


def train_on_store(
    store: str | Path,
    run_dir: str | Path,
    *,
    sam: str = "vit_b",
    sam_checkpoint: str | Path | None = None,
    adapter: str = "conv-lora",
    rank: int = 3,
    experts: int = 8,
    alpha: float = 32.0,
    gate: str = "hard",
    mask_token_init: str = "copy",
    image_size: int = 1024,
    rgb_bands: Sequence[int] | None = None,
    class_weights: Sequence[float] | str | None = None,
    augment: bool = True,
    progress: bool = True,
    **train_options: Any,
) -> dict[str, Any]:
    """Fine-tune on a store's training split, validating on its validation split.

    `train_options` are `convlora.train.TrainConfig` fields (epochs, steps, batch_size,
    accumulate, lr, device, ...). `class_weights="auto"` derives median-frequency weights from the
    training labels. Returns the summary of `convlora.train.fit`.
    """
    attrs = store_attrs(store)
    check_training(run_dir, sam=sam, sam_checkpoint=sam_checkpoint, image_size=image_size)
    cfg = model_config(
        attrs, sam=sam, adapter=adapter, image_size=image_size, rank=rank, experts=experts,
        alpha=alpha, gate=gate, mask_token_init=mask_token_init, rgb_bands=rgb_bands,
    )  # fmt: skip
    if class_weights == "auto":
        class_weights = class_frequency_weights(store, cfg.num_classes)
        logger.info("class weights from training label frequencies: %s", class_weights)
    elif isinstance(class_weights, str):
        raise InputError(f"class weights {class_weights!r}: give 'auto' or one number per class")
    train_cfg = TrainConfig(class_weights=class_weights, **train_options)
    train_set = TileDataset(store, "train", augment=augment, seed=train_cfg.seed)
    val_set = TileDataset(store, "val", augment=False)
    if len(train_set) == 0:
        raise InputError(f"{store}: no training tiles")
    if len(val_set) == 0:
        logger.warning("%s: no validation tiles; the last weights are kept as the best", store)
    return fit(
        cfg, train_cfg, train_set, val_set, run_dir,
        sam_checkpoint=sam_checkpoint, metadata=adapter_metadata(attrs), progress=progress,
        class_names=[c["name"] for c in attrs["classes"]],
    )  # fmt: skip


def check_compatible(attrs: dict[str, Any], metadata: dict[str, Any], store: str | Path) -> None:
    """Refuse a store whose classes or bands differ from those the adapter was trained on."""
    classes = [(c["id"], c["name"]) for c in attrs["classes"]]
    trained = [(c["id"], c["name"]) for c in metadata.get("classes", [])]
    if classes != trained:
        raise InputError(
            f"{store}: classes {[n for _, n in classes]} differ from the model's "
            f"{[n for _, n in trained]} (tile it with the model's class map)"
        )
    if [int(b) for b in attrs["bands"]] != [int(b) for b in metadata.get("bands", [])]:
        raise InputError(
            f"{store}: bands {attrs['bands']} differ from the model's {metadata.get('bands')} "
            "(tile it with --bands as for training)"
        )


def evaluate_on_store(
    store: str | Path,
    model_path: str | Path,
    *,
    split: str = "val",
    sam_checkpoint: str | Path | None = None,
    batch_size: int = 4,
    device: str = "auto",
) -> dict[str, Any]:
    """Metrics of a trained adapter (run folder or adapter file) on a labelled store.

    The store's tiles are normalised with the adapter's statistics, as at prediction time, so a
    store tiled from another area is measured exactly as the model will be used there.
    """
    attrs = store_attrs(store)
    dev = resolve_device(device)
    model, metadata = load_adapter(model_path, sam_checkpoint=sam_checkpoint, device=dev)
    check_compatible(attrs, metadata, store)
    dataset = TileDataset(store, split, augment=False, normalization=metadata["normalization"])
    if len(dataset) == 0:
        raise InputError(f"{store}: no tiles in split {split!r}")
    metrics = evaluate(
        model, dataset, batch_size=batch_size, device=dev,
        class_names=[c["name"] for c in metadata["classes"]],
    )  # fmt: skip
    return {**metrics, "split": split, "tiles": len(dataset), "store": str(store)}
