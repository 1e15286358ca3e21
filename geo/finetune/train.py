"""Fine-tuning on a tile store: the model and recipe from the store and the user's choices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convlora.adapter_files import FORMAT as ADAPTER_FORMAT
from convlora.adapter_files import LATEST_DIR, METADATA_NAME, WEIGHTS_NAME
from convlora.config import SAM_VARIANTS, ModelConfig
from convlora.devices import resolve_device
from convlora.errors import ConvLoRAInputError, SettingsChanged
from convlora.sam_checkpoint import check_sam_checkpoint, checkpoint_variant
from convlora.train import TrainConfig, fit
from convlora.training.state import CheckpointDir, read_resumable
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.metrics import one_class_warning
from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.finetune.bands import rgb_positions
from geo.finetune.changed import settings_changed
from geo.finetune.config import FROM_SCRATCH_SAM, FinetuneConfig, chosen_adapter
from geo.finetune.dataset import TileDataset
from geo.finetune.launch import check_processes, train_in_processes, under_torchrun
from geo.finetune.start import check_start, check_start_fits, start_rgb_bands
from geo.io.outputs import (
    check_folder_unlocked,
    check_output,
    foreign_files,
    locked_folder,
    read_json_object,
)
from geo.options import checked_once, flag

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "metrics.jsonl", METADATA_NAME, WEIGHTS_NAME)
RARE_SHARE = 0.05  # a class under this share of the labelled training pixels is "rare"
MAX_CLASS_WEIGHT = 10.0  # automatic weights stop here: a class of a few pixels must not rule


@dataclass(frozen=True)
class FinetunePlan:
    """A checked training run: the store, the model and recipe, where it writes."""

    config: FinetuneConfig
    store: StoreInfo
    model: ModelConfig
    train: TrainConfig
    run_dir: Path


def class_frequency_weights(store: StoreInfo) -> list[float]:
    """Median-frequency class weights from the training labels, at most MAX_CLASS_WEIGHT
    (absent classes get 0): a class of a handful of pixels weighed hundreds of times more than
    the others, and the model painted it everywhere."""
    counts = np.asarray(store.class_pixels["train"], dtype=np.float64)
    freq = counts / max(counts.sum(), 1.0)
    present = freq > 0
    weights = np.zeros(len(counts))
    weights[present] = np.median(freq[present]) / freq[present]
    capped = [c.name for c, w in zip(store.classes, weights, strict=True) if w > MAX_CLASS_WEIGHT]
    if capped:
        log.info(
            "class weight(s) of %s held at %g (so few training pixels that their weight from "
            "frequency would rule the loss)",
            ", ".join(capped), MAX_CLASS_WEIGHT,
        )  # fmt: skip
    return [round(float(w), 6) for w in np.minimum(weights, MAX_CLASS_WEIGHT)]


def _warn_rare_classes(store: StoreInfo) -> None:
    counts = np.asarray(store.class_pixels["train"], dtype=np.float64)
    share = counts / max(counts.sum(), 1.0)
    rare = [c.name for c, s in zip(store.classes, share, strict=True) if 0 < s < RARE_SHARE]
    absent = [c.name for c, n in zip(store.classes, counts, strict=True) if n == 0]
    if rare:
        log.warning(
            "rare class(es) %s: under %.0f%% of the labelled training pixels; "
            "%s auto weights the loss by class frequency",
            ", ".join(rare), 100 * RARE_SHARE, flag("class_weights"),
        )  # fmt: skip
    if absent:
        log.warning("class(es) %s have no labelled training pixel", ", ".join(absent))


def model_config(config: FinetuneConfig, store: StoreInfo) -> ModelConfig:
    """The model for a store: its classes and bands, and the chosen SAM and adapter."""
    token_init = config.mask_token_init
    if token_init == "auto":
        token_init = "copy" if config.sam_checkpoint else "copy+noise"
    try:
        return ModelConfig(
            sam_variant=sam_variant(config),
            image_size=config.image_size or store.tile_size,
            adapter=chosen_adapter(config.adapter, config.sam_checkpoint),
            rank=config.rank,
            alpha=config.alpha,
            experts=config.experts,
            gate=config.gate,
            mask_token_init=token_init,
            num_classes=store.num_classes,
            in_channels=len(store.bands),
            band_init=rgb_positions(store, config.rgb_bands, _rgb_given_by(config)),
        )
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None


def _rgb_given_by(config: FinetuneConfig) -> str | None:
    """Where the run's `rgb_bands` come from, when not from the option: the model it starts
    from (`geo.finetune.start.starting_values`)."""
    if config.init_from is None or config.rgb_bands is None:
        return None
    try:
        start = AdapterMetadata.read(config.init_from)
    except InputError:
        return None  # named by the checks of the start
    if start_rgb_bands(start) != list(config.rgb_bands):
        return None
    return f"those of the model it starts from ({flag('init_from')})"


def sam_variant(config: FinetuneConfig) -> str:
    """`--sam`, with auto resolved: the variant of the SAM checkpoint (InputError when it is
    none of the registry's), or `FROM_SCRATCH_SAM` without one."""
    if config.sam != "auto":
        return config.sam
    if config.sam_checkpoint is None:
        return FROM_SCRATCH_SAM
    try:
        variant = checkpoint_variant(config.sam_checkpoint)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    if variant is None:
        raise InputError(
            f"{config.sam_checkpoint}: not a checkpoint of a SAM variant this tool knows "
            f"({', '.join(SAM_VARIANTS)}); name its variant with {flag('sam')}"
        )
    return variant


def _paths(config: FinetuneConfig) -> list[str]:
    return [config.store + "/zarr.json", config.out, config.sam_checkpoint or ""]


def own_run_files(run_dir: Path) -> set[str]:
    """The run files in `run_dir` that an earlier training run of this tool wrote."""
    if {"model", "train"} <= set(read_json_object(run_dir / "config.json")):
        return set(RUN_FILES)
    if read_json_object(run_dir / METADATA_NAME).get("format") == ADAPTER_FORMAT:
        return {METADATA_NAME, WEIGHTS_NAME}
    return set()


def check_run_settings(
    config: FinetuneConfig, tile_size: int, store_fingerprint: Callable[[], str] | None = None
) -> Path:
    """What a training run needs besides its store (checked before tiling when the store is
    still to be built): the run folder can be written and holds no foreign files, the state an
    interrupted run left to resume from (RUN_DIR/last) is readable and, where
    `store_fingerprint` gives the fingerprint the store will have, was trained on that store,
    the device (and as many as --nproc asks for) exists, and the SAM checkpoint fits the variant
    at the image size (shapes only: its tensors are mapped, not read). Returns the run folder;
    raises InputError naming the input."""
    run_dir = check_output(config.out, into=True)
    if not config.overwrite:
        foreign_files([run_dir / name for name in RUN_FILES], own_run_files(run_dir))
    check_processes(config)
    if config.init_from is not None:
        check_start(config.init_from, run_dir, config.sam_checkpoint)
    try:
        last = CheckpointDir(run_dir / LATEST_DIR).current()
        if last is not None:
            saved = read_resumable(last)
            if store_fingerprint is not None:
                _check_same_store(run_dir, saved, store_fingerprint)
        resolve_device(config.device)
        if config.sam_checkpoint is not None:
            image_size = config.image_size or tile_size
            check_sam_checkpoint(config.sam_checkpoint, sam_variant(config), image_size)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    return run_dir


def _check_same_store(
    run_dir: Path, saved: dict[str, Any], store_fingerprint: Callable[[], str]
) -> None:
    """A run resumes only on the store it trained on: refused before tiling, which would
    otherwise replace the store only for training to refuse the run folder after it."""
    trained_on = saved.get("spec", {}).get("metadata", {}).get("store_fingerprint")
    if trained_on and trained_on != store_fingerprint():
        raise InputError(
            f"{run_dir}: an earlier run on another tile store is there (other scenes, labels or "
            f"tiling options); use another {flag('out')} folder, or delete it to start over"
        )


@checked_once(_paths)
def check_finetune(config: FinetuneConfig) -> FinetunePlan:
    """Pre-flight check of a training run: the store (with labelled training tiles) and
    `check_run_settings`. Raises InputError naming the input; writes nothing."""
    store = StoreInfo.read(config.store)
    counts = store.class_pixels.get("train", ())
    present = [c.name for c, n in zip(store.classes, counts, strict=False) if n > 0]
    if len(present) < 2:
        held = f"only {present[0]!r}" if present else "no labelled pixel"
        raise InputError(
            f"{config.store}: its training tiles hold {held}, nothing to tell apart (check the "
            "labels, --label-field, the class map and the AOI)"
        )
    if not TileDataset(store, "train", labelled_only=True).keeps_labels():
        raise InputError(
            f"{config.store}: every labelled pixel of its training tiles lies in a validation "
            "tile too (scenes of one place overlap), so training would learn none: tile it "
            f"with a smaller {flag('tile_size')}, or {flag('val_fraction')} 0 to train on all"
        )
    run_dir = check_run_settings(config, store.tile_size)
    if not under_torchrun():  # under torchrun, the launcher holds the run folder's lock
        check_folder_unlocked(run_dir, "training run")
    model = model_config(config, store)
    if config.init_from is not None:
        check_start_fits(config.init_from, model, store)
    if model.image_size != store.tile_size:  # a choice (the demo's), not a problem: said once
        log.info(
            "%s %d: tiles of %d px are resized to %d px for SAM (the scale the model learns; "
            "prediction resizes the same way)",
            flag("image_size"), model.image_size, store.tile_size, model.image_size,
        )  # fmt: skip
    if config.class_weights == "auto":
        weights: list[float] | None = class_frequency_weights(store)
        log.info("class weights from training label frequencies: %s", weights)
    else:
        weights = config.class_weights
        if weights is None:
            _warn_rare_classes(store)
        elif len(weights) != store.num_classes:
            raise InputError(
                f"{flag('class_weights')} {','.join(map(str, weights))}: give one weight per "
                f"class ({store.num_classes}: {', '.join(c.name for c in store.classes)})"
            )
    try:
        train = config.train_config(weights)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    if config.init_from is not None:
        weighed = "no class weights" if weights is None else f"class weights {weights}"
        log.info(
            "%s: trained on with the %s loss and %s (the model's, unless given)",
            flag("init_from"), train.loss, weighed,
        )  # fmt: skip
    return FinetunePlan(config, store, model, train, run_dir)


def train_on_store(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune on the store's training split, validating on its validation split.

    Resumes an interrupted run in `config.out`. With `config.nproc` > 1 (and not already under
    torchrun) the training runs in that many processes (`geo.finetune.launch`). Returns the
    summary of `convlora.train.fit`.
    """
    plan = check_finetune(config)
    if under_torchrun():
        return _train(config, plan)
    with locked_folder(plan.run_dir, "training run"):  # a second run into the folder stops
        if config.nproc > 1:
            return train_in_processes(config)
        return _train(config, plan)


def _train(config: FinetuneConfig, plan: FinetunePlan) -> dict[str, Any]:
    """The training run of a checked plan, in this process."""
    store = plan.store
    train_set = TileDataset(
        store, "train", augment=config.augment, seed=plan.train.seed, labelled_only=True
    )
    val_set = TileDataset(store, "val", augment=False, labelled_only=True)
    if len(train_set) == 0:
        raise InputError(f"{config.store}: no training tile holds a labelled pixel")
    left_out = store.split_counts.get("train", 0) - len(train_set)
    if left_out:
        log.info("%d training tile(s) without a labelled pixel are left out", left_out)
    if len(val_set) == 0:
        log.warning("%s: no validation tiles; the last weights are kept as the best", store.path)
    try:
        summary = fit(
            plan.model, plan.train, train_set, val_set, plan.run_dir,
            sam_checkpoint=config.sam_checkpoint, metadata=AdapterMetadata.from_store(store),
            class_names=[c.name for c in store.classes], progress=config.progress,
            init_from=config.init_from,
        )  # fmt: skip
    except SettingsChanged as err:
        raise settings_changed(err) from None
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    val = AdapterMetadata.read(plan.run_dir).training.get("val")
    warning = one_class_warning(val, weighted=plan.train.class_weights is not None)
    if warning:
        log.warning("%s: %s", plan.run_dir, warning)
    return {**summary, "warnings": [warning] if warning else []}
