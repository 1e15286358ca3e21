"""A run folder of other settings, refused in the user's terms: the options as typed
(`--steps: 10 -> 20`), and the tile store where what differs follows from the store."""

from __future__ import annotations

from convlora.errors import Difference, SettingsChanged
from geo.errors import InputError
from geo.finetune.config import FinetuneConfig
from geo.options import flag

OPTION_OF = {  # the model core's settings that an option of another name sets
    "model.sam_variant": "sam",
    "model.band_init": "rgb_bands",
    "sam_checkpoint_sha256": "sam_checkpoint",
    "world_size": "nproc",
    "init_from_sha256": "init_from",
}
FROM_STORE = ("train_items", "val_items", "metadata.", "model.num_classes", "model.in_channels",
              "model.num_mask_tokens")  # fmt: skip
FINETUNE_FIELDS = frozenset(FinetuneConfig.model_fields)
OPTION_PARTS = ("model.", "train.")  # settings named after the option that sets them
STORE = "the tile store (its classes, bands, tiles or statistics)"


def settings_changed(err: SettingsChanged) -> InputError:
    """The one-line refusal of `err`'s run folder, naming what differs as the user sets it, and
    how to train on from that model instead."""
    named: list[Difference] = []
    from_store = False
    for key, old, new in err.differences:
        field = OPTION_OF.get(key) or key.partition(".")[2]
        if key.startswith(FROM_STORE):
            from_store = True  # named once, last
        elif key in OPTION_OF or (key.startswith(OPTION_PARTS) and field in FINETUNE_FIELDS):
            if key == "model.band_init":  # positions among the store's bands, from 0
                old, new = _from_one(old), _from_one(new)
            named.append((flag(field), old, new))
        else:
            named.append((key, old, new))
    if from_store:
        named.append((STORE, None, None))
    advice = (
        f"use another {flag('out')} folder ({flag('init_from')} {err.run_dir} there trains on "
        "from this model), or delete it to start over"
    )
    return InputError(str(SettingsChanged(err.run_dir, named, advice)))  # in these names


def _from_one(positions: object) -> object:
    """Band positions counted from 1, as `--rgb-bands` counts them."""
    return [p + 1 for p in positions] if isinstance(positions, list) else positions
