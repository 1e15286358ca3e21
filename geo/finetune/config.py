"""`FinetuneConfig`: the model and training options a user chooses when fine-tuning on a store."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import field_validator, model_validator

from convlora.config import ADAPTERS, DEFAULT_LOSS, GATES, LOSSES, SAM_VARIANTS, TOKEN_INITS
from convlora.training.config import TrainConfig
from geo.finetune.start import starting_values
from geo.options import (
    DEVICE_HELP,
    StageConfig,
    absolute_paths,
    check_device,
    flag,
    local_path,
    option,
    pixel_size,
    validates,
)

MASK_TOKEN_INITS = ("auto", *(t for t in TOKEN_INITS if t != "auto"))
FROM_SCRATCH_SAM = "tiny"  # `--sam auto` without a checkpoint
OFFICIAL_LR = 1e-4  # the official recipe, fine-tuning a pretrained SAM
FROM_SCRATCH_LR = 3e-4  # no SAM checkpoint: the whole model learns from random weights


class FinetuneConfig(StageConfig):
    """Fine-tune SAM with an adapter on a tile store (see `geo.finetune.train_on_store`)."""

    store: str = option(help="tile store from `convlora-geo tile`", positional=True,
                        metavar="STORE.zarr")  # fmt: skip
    out: str = option(help="run folder (RUN_DIR): adapter, checkpoints, metrics")
    sam: str = option(
        "auto",
        help="SAM variant; auto: the variant of --sam-checkpoint, tiny without one (an untrained "
        "encoder learns best small)",
        choices=("auto", *SAM_VARIANTS),
    )
    sam_checkpoint: str | None = option(
        None,
        help="official SAM .pth checkpoint (default: none, SAM starts untrained)",
        aliases=("--checkpoint",),
    )
    init_from: str | None = option(
        None,
        help="start from a trained model (a run folder, RUN/last or an adapter file) instead of "
        "fresh weights, with its SAM, adapter and image size, on a store of its classes (tile new "
        "labels with --class-map RUN); the new run gets its own --out (default: none, fresh "
        "weights)",
        metavar="RUN",
    )
    adapter: str = option(
        "auto",
        help="what trains: conv-lora or lora adapters in the image encoder, the decoder only, "
        "or the full model; auto: conv-lora with --sam-checkpoint, full without (an untrained "
        "encoder must learn too)",
        choices=("auto", *ADAPTERS),
    )
    rank: int = option(3, help="LoRA rank", ge=1)
    alpha: float = option(32.0, help="LoRA alpha (updates scaled by alpha / rank)", gt=0)
    experts: int = option(8, help="Conv-LoRA experts (scales 1..N)", ge=1)
    gate: str = option(
        "hard", help="Conv-LoRA gate: hard (official) or soft (the task loss trains the router)",
        choices=GATES,
    )  # fmt: skip
    mask_token_init: str = option(
        "auto",
        help="class queries: copies of SAM's mask token (official, with a checkpoint), copies "
        "plus noise (an untrained SAM then tells them apart); auto picks by --sam-checkpoint",
        choices=MASK_TOKEN_INITS,
    )
    loss: str = option(
        DEFAULT_LOSS, help="hungarian (Mask2Former set loss, official) or semantic (per pixel)",
        choices=LOSSES,
    )  # fmt: skip
    image_size: int | None = option(
        None, help="side SAM's encoder sees, a multiple of 16 (default: the store's tile size)"
    )
    rgb_bands: list[int] | None = option(
        None,
        help="3 source bands fed to SAM's R,G,B, e.g. 4,3,2 (default: from band descriptions "
        "or colour interpretation; else the first three)",
        metavar="R,G,B",
    )
    epochs: int | None = option(
        None, help="passes over the training tiles (default: 30, unless --steps is given)", ge=1
    )
    steps: int | None = option(
        None, help="optimiser steps in total, instead of --epochs (default: none, by epochs)", ge=1
    )
    batch_size: int = option(1, help="tiles per forward pass, per process", ge=1)
    accumulate: int = option(4, help="forward passes per optimiser step", ge=1)
    lr: float | None = option(
        None,
        help=f"peak learning rate, decayed linearly to 0 (default: {OFFICIAL_LR:g} with a SAM "
        f"checkpoint, {FROM_SCRATCH_LR:g} without)",
        gt=0,
    )
    weight_decay: float = option(1e-4, help="AdamW weight decay", ge=0)
    warmup_steps: int = option(0, help="optimiser steps of linear warm-up", ge=0)
    grad_clip: float = option(1.0, help="largest gradient norm (0: no clipping)", ge=0)
    class_weights: list[float] | Literal["auto"] | None = option(
        None,
        help="loss weight per class: auto (median frequency of the training labels) or one "
        "number per class, e.g. 1,2.5,4 (default: none, every class weighs 1; the log names a "
        "rare class)",
        metavar="auto|W,W,...",
    )
    early_stop: int | None = option(
        None,
        help="stop after this many epochs without a better validation mIoU (default: none, "
        "train to the end; the best checkpoint is kept either way)",
        ge=1,
    )
    augment: bool = option(True, help="random flips and quarter turns of training tiles")
    seed: int = option(42686693, help="seed of weights, data order and augmentation", ge=0)
    checkpoint_every: int = option(50, help="optimiser steps between resumable checkpoints", ge=1)
    log_every: int = option(10, help="optimiser steps between metrics.jsonl lines", ge=1)
    num_workers: int = option(0, help="data loader processes", ge=0)
    compile: bool = option(
        False,
        help="torch.compile the model for training and validation: faster on GPUs, after first "
        "steps that compile for minutes",
    )
    device: str = option("auto", help=DEVICE_HELP)
    nproc: int = option(
        1,
        help="training processes, started with torchrun: one per GPU on CUDA (NCCL), else CPU "
        "processes (gloo); each takes --batch-size tiles per pass (ignored under torchrun)",
        ge=1,
    )
    progress: bool = option(True, help="progress bar on a terminal")
    overwrite: bool = option(
        False, help="replace files in the run folder that convlora-geo did not write"
    )

    _local = validates("store", "out", by=local_path)
    _paths = validates("sam_checkpoint", "init_from", by=absolute_paths)
    _image_size = validates("image_size", by=pixel_size)

    @field_validator("rgb_bands")
    @classmethod
    def _rgb_bands(cls, bands: list[int] | None) -> list[int] | None:
        if bands is not None and (len(bands) != 3 or min(bands) < 1):
            raise ValueError("give three 1-based source bands, e.g. 4,3,2")
        return bands

    @field_validator("class_weights")
    @classmethod
    def _class_weights(cls, weights: list[float] | str | None) -> list[float] | str | None:
        if isinstance(weights, list) and (min(weights, default=0) < 0 or not any(weights)):
            raise ValueError("give weights of 0 or more, not all 0, e.g. 1,2.5")
        return weights

    _device = validates("device", by=check_device)

    @model_validator(mode="before")
    @classmethod
    def _start(cls, values: Any) -> Any:
        """With `init_from`, the model options left at their defaults are the model's."""
        return cls.resolve_start(values)

    @classmethod
    def resolve_start(cls, values: Any) -> Any:
        """`values` (parameters, not yet validated) with `init_from`'s model options filled in
        (`geo.finetune.start.starting_values`)."""
        return starting_values(values, {n: f.default for n, f in cls.model_fields.items()})

    @model_validator(mode="after")
    def _budget(self) -> Self:
        if self.epochs is not None and self.steps is not None:
            raise ValueError(
                f"give {flag('epochs')} or {flag('steps')}, not both (got {flag('epochs')} "
                f"{self.epochs} and {flag('steps')} {self.steps})"
            )
        return self

    @property
    def learning_rate(self) -> float:
        """`lr`, or the default for starting from a checkpoint or from scratch."""
        if self.lr is not None:
            return self.lr
        return OFFICIAL_LR if self.sam_checkpoint else FROM_SCRATCH_LR

    def train_config(self, class_weights: list[float] | None) -> TrainConfig:
        """The optimisation recipe for `convlora.train.fit`."""
        return TrainConfig(
            epochs=self.epochs,
            steps=self.steps,
            batch_size=self.batch_size,
            accumulate=self.accumulate,
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_clip=self.grad_clip,
            loss=self.loss,
            class_weights=None if class_weights is None else tuple(class_weights),
            device=self.device,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
            early_stop_patience=self.early_stop,
            num_workers=self.num_workers,
            compile=self.compile,
        )


def chosen_adapter(adapter: str, sam_checkpoint: str | None) -> str:
    """`--adapter`, with auto resolved: conv-lora with a SAM checkpoint, full without one."""
    if adapter != "auto":
        return adapter
    return "conv-lora" if sam_checkpoint else "full"
