"""A tile store already at the output: reused, refused naming what differs, or kept when only an
older convlora-geo's way of drawing the split or the statistics sets it apart."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo.errors import InputError
from geo.options import changed_options

if TYPE_CHECKING:
    from geo.tiling.inputs import TilingRequest

log = logging.getLogger(__name__)

RECIPES = {"split": "validation split", "stats": "band statistics"}  # ALGORITHM entries
ROLE_NAMES = {"image": "scene(s)", "labels": "label file(s)", "aoi": "--aoi file(s)"}
SETTING_NAMES = {"class_map": "the class map", "collars": "the scenes' fill collars",
                 "format": "the store format"}  # fmt: skip


def kept_fingerprint(request: TilingRequest, existing: Mapping[str, Any]) -> str | None:
    """The fingerprint of the tile store already at the request's output (its attributes
    `existing`) when it is used as it is, None when tiling is to replace it (`--overwrite`);
    raises InputError naming what differs.

    A store of the same inputs and settings that an older convlora-geo tiled (the same tiles,
    the split or statistics drawn another way) is kept with a warning: a model trained on it
    stays trained on the store it names, and the pipeline runs on after an upgrade."""
    stored, out = str(existing.get("fingerprint")), request.config.out
    if stored == request.fingerprint:
        return stored
    if request.config.overwrite:
        return None
    old_settings = dict(existing.get("settings") or {})
    settings = json.loads(json.dumps(request.settings, default=str))  # as stored: lists
    derived = not request.config.class_map and old_settings.get("class_map") != settings.get(
        "class_map"
    )  # classes made from the labels: both lists say more than "the class map differs"
    skipped = {"algorithm", "class_map"} if derived else {"algorithm"}
    differences = [
        *_input_differences(existing.get("inputs") or [], request.inputs),
        *([_derived_classes(old_settings, settings)] if derived else []),
        *changed_options(
            {k: v for k, v in old_settings.items() if k not in skipped},
            {k: v for k, v in settings.items() if k not in skipped},
            SETTING_NAMES,
        ),
    ]
    if differences:
        raise InputError(
            f"{out}: already holds a tile store of other inputs or settings "
            f"({'; '.join(differences)}); write the new store elsewhere or pass --overwrite"
        )
    old, new = old_settings.get("algorithm") or {}, settings["algorithm"]
    if old.get("version") != new["version"]:
        raise InputError(
            f"{out}: tiled by another convlora-geo, whose tiles differ from this one's (tiling "
            f"version {old.get('version')}, now {new['version']}); pass --overwrite to tile it "
            "again, or write the new store elsewhere"
        )
    recipes = " and ".join(RECIPES.get(k, k) for k in sorted(new) if old.get(k) != new[k])
    log.warning(
        "%s was tiled by another convlora-geo version, which draws the %s another way: using it "
        "as it is (--overwrite tiles it again)",
        out,
        recipes,
    )
    return stored


def _derived_classes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The class map made from the labels (no --class-map), now and in the store: the labels
    changed, or another convlora-geo made it another way (a numeric field's 0 is background)."""

    def listed(settings: Mapping[str, Any]) -> str:
        classes = (settings.get("class_map") or {}).get("classes") or []
        return ", ".join(f"{i} {c.get('name')}" for i, c in enumerate(classes))

    return (
        f"the classes made from the labels without --class-map are {listed(new)}, the store's "
        f"{listed(old)}"
    )


def _input_differences(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The inputs that changed, by role and file name (the fingerprint ignores where they lie);
    a class map given on one side only is the settings' to say (its classes)."""
    changed = []
    for role in dict.fromkeys([*(r.get("role") for r in old), *(r["role"] for r in new)]):
        before = [r for r in old if r.get("role") == role]
        now = [r for r in new if r["role"] == role]
        what = ROLE_NAMES.get(str(role), str(role))
        if role == "class_map" and not (before and now):
            continue
        if len(before) != len(now):
            changed.append(f"{len(now)} {what}, the store's {len(before)}")
            continue
        for was_input, now_input in zip(before, now, strict=True):
            if was_input.get("sha256") != now_input["sha256"]:
                name, was = Path(now_input["path"]).name, Path(str(was_input.get("path"))).name
                changed.append(f"{name} changed" if name == was else f"{name} instead of {was}")
    return changed
