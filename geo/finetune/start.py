"""Training from a trained model (`--init-from RUN`): the model settings it was trained with
become the run's, and so do its loss and class weights unless given; the store must hold its
classes and bands, so that its weights fit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convlora.config import ModelConfig
from convlora.errors import ConvLoRAInputError
from geo.contracts.adapter import AdapterMetadata, run_folder, with_trained_sam_checkpoint
from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.options import flag

log = logging.getLogger(__name__)

OPTION_OF = {"sam": "sam_variant", "adapter": "adapter", "image_size": "image_size",
             "mask_token_init": "mask_token_init", "rank": "rank", "alpha": "alpha",
             "experts": "experts", "gate": "gate"}  # fmt: skip  # option -> model config field
RECIPE = ("loss", "class_weights")  # training options a model's run keeps unless given


def starting_values(values: Any, defaults: Mapping[str, Any]) -> Any:
    """A finetune config's values (a "before" validator's) with `init_from`: the model options
    and the RECIPE options left at their `defaults` take the starting model's (another loss, or
    no class weights, made the model trained further worse), and a missing SAM checkpoint is the
    one it was trained on, where that file still lies. An unreadable model is left to
    `check_start`, which names it."""
    if not isinstance(values, dict) or not values.get("init_from"):
        return values
    try:
        start = AdapterMetadata.read(str(values["init_from"]))
    except InputError:
        return values
    own: dict[str, Any] = {o: getattr(start.model, field) for o, field in OPTION_OF.items()}
    rgb = start_rgb_bands(start)
    if rgb is not None:
        own["rgb_bands"] = rgb
    recipe = start.training.get("train") or {}
    own.update({o: recipe[o] for o in RECIPE if o in recipe})
    kept = {o: v for o, v in own.items() if values.get(o, defaults.get(o)) == defaults.get(o)}
    return with_trained_sam_checkpoint({**values, **kept}, model_key="init_from")


def start_rgb_bands(start: AdapterMetadata) -> list[int] | None:
    """The source bands a model feeds SAM's R, G, B (None: its bands in order)."""
    if start.model.band_init is None:
        return None
    return [start.bands[p] for p in start.model.band_init]


def check_start(start_path: str, out: Path, sam_checkpoint: str | None) -> None:
    """Refuse, by name, a starting model that cannot start a run: unreadable, needing a SAM
    checkpoint it is not given, or the run folder itself (which resumes its own checkpoint
    instead). Checked before tiling."""
    if out.resolve() == run_folder(start_path).resolve():
        raise InputError(
            f"{flag('init_from')} {start_path}: the run folder itself; give the new run "
            f"another {flag('out')}"
        )
    from convlora.checkpoint import check_adapter  # torch: not for --help and tiling

    try:
        check_adapter(start_path, sam_checkpoint, option=flag("sam_checkpoint"))
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None


def check_start_fits(start_path: str, model: ModelConfig, store: StoreInfo) -> None:
    """Refuse, by name, a starting model whose weights do not fit the run: of other classes or
    bands than the store, or of other settings than the options give (only options given
    otherwise can differ: the others are its own)."""
    start = AdapterMetadata.read(start_path)
    names, wanted = [c.name for c in start.classes], [c.name for c in store.classes]
    if names != wanted:
        raise InputError(
            f"{store.path}: classes {wanted} differ from those of {start_path} ({names}); tile "
            f"the labels with {flag('class_map')} {start_path} (the model's own)"
        )
    if len(start.bands) != len(store.bands):
        raise InputError(
            f"{store.path}: {len(store.bands)} bands, where {start_path} takes "
            f"{len(start.bands)}; tile scenes of its bands ({flag('bands')})"
        )
    named = all(start.band_names) and all(store.band_names)
    if named and list(start.band_names) != list(store.band_names):
        raise InputError(
            f"{store.path}: bands {', '.join(store.band_names)}, where {start_path} takes "
            f"{', '.join(start.band_names)}; tile the scenes' bands in its order "
            f"({flag('bands')})"
        )
    given = [
        f"{flag(o)} {getattr(model, field)} (the model's {getattr(start.model, field)})"
        for o, field in OPTION_OF.items()
        if getattr(model, field) != getattr(start.model, field)
    ]
    if model.band_init != start.model.band_init:
        given.append(f"{flag('rgb_bands')} (the model's SAM R,G,B bands differ)")
    if given:
        raise InputError(
            f"{flag('init_from')} {start_path}: {'; '.join(given)}; leave those options out to "
            "train the model further"
        )
    log.info(
        "%s %s: SAM %s, adapter %s, %d px, its weights of step %s",
        flag("init_from"), start_path, start.model.sam_variant, start.model.adapter,
        start.model.image_size, start.training.get("step", "?"),
    )  # fmt: skip
