"""`EvaluateConfig`: which model to measure on which labelled tile store."""

from __future__ import annotations

from pydantic import model_validator

from geo.contracts.adapter import with_trained_sam_checkpoint
from geo.options import (
    DEVICE_HELP,
    StageConfig,
    absolute_paths,
    check_device,
    local_path,
    option,
    validates,
)

SPLIT_CHOICES = ("train", "val", "all")


class EvaluateConfig(StageConfig):
    """Measure a trained adapter on a labelled tile store (see `geo.evaluate.evaluate_on_store`)."""

    store: str = option(help="labelled tile store", positional=True, metavar="STORE.zarr")
    model: str = option(help="run folder (RUN_DIR) or adapter file")
    split: str | None = option(
        None,
        help="tiles to score: train, val or all (default: all labelled tiles)",
        choices=SPLIT_CHOICES,
    )
    sam_checkpoint: str | None = option(
        None,
        help="the base SAM .pth the adapter was trained on (default: the file its training run "
        "read, while it is there)",
        aliases=("--checkpoint",),
    )
    reference: str | None = option(
        None, help="polygons (any vector file) to count objects against, each polygon one "
        "object (default: the objects of the store's labels)",
    )  # fmt: skip
    tile_size: int | None = option(
        None, help="window side in px (default: the tile size the model was trained on)"
    )
    overlap: int | None = option(
        None, help="window overlap in px (default: the training overlap, or tile size / 8)"
    )
    batch_size: int | None = option(
        None, help="windows per forward pass (default: 4 on CPU, from free memory on CUDA)", ge=1
    )
    device: str = option("auto", help=DEVICE_HELP)

    _local = validates("store", by=local_path)
    _paths = validates("model", "sam_checkpoint", "reference", by=absolute_paths)
    _device = validates("device", by=check_device)

    _sam_checkpoint = model_validator(mode="before")(with_trained_sam_checkpoint)
