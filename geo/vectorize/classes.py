"""The classes of a class raster given without a class map.

A class raster `predict` wrote names its classes in its metadata (`CLASSES_TAG`); any other is read
for the class ids it holds: 0 is background, a single other id is one class named after the file,
more are each named by their id; the raster's colour table gives their colours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from geo.contracts.classes import CLASSES_TAG, IGNORE, ClassMap, parse_class_list
from geo.errors import InputError
from geo.io.codes import band_codes
from geo.options import flag

log = logging.getLogger(__name__)
NOT_CLASS_IDS = (
    "a class raster holds class ids (predict's NAME_classes.tif, not NAME_probability.tif)"
)


def rasters_class_map(paths: Sequence[str], listed: str | None) -> ClassMap:
    """The classes `predict` wrote into the class rasters at `paths` (`listed`: the first's
    CLASSES_TAG; a mosaic's rasters list the same, `geo.vectorize.mosaic`), else one per id any
    of them holds, coloured by the first colour table that has it (InputError for values that
    are no class ids)."""
    if listed is not None:
        source = f"{paths[0]} ({CLASSES_TAG})"
        try:
            document = json.loads(listed)
        except ValueError:
            raise InputError(f"{source}: not JSON; give {flag('class_map')}") from None
        classes = ClassMap(parse_class_list(document, source))
        log.info("%s: classes %s, as predict wrote them", paths[0], _names(classes))
        return classes
    ids: set[int] = set()
    colors: dict[float, str] = {}
    for path in paths:
        codes, found, _ = band_codes(path, "class ids", NOT_CLASS_IDS)
        wrong = sorted(c for c in codes if c != IGNORE and (c < 0 or c > IGNORE or c != int(c)))
        if wrong:
            shown = ", ".join(str(c) for c in wrong[:5]) + (", ..." if len(wrong) > 5 else "")
            raise InputError(
                f"{path}: holds value(s) {shown}, which are no class ids (whole numbers 0 to "
                f"{IGNORE - 1}); {NOT_CLASS_IDS}"
            )
        ids.update(int(c) for c in codes if c not in (0, IGNORE))
        colors = found | colors
    top = max(ids, default=1)  # a raster of background alone: one class, after the file
    items = [{"id": 0, "name": "background"}]
    for i in range(1, top + 1):
        label = Path(paths[0]).stem if len(ids) <= 1 and i == top else str(i)
        items.append({"id": i, "name": label, **({"color": colors[i]} if i in colors else {})})
    classes = ClassMap(parse_class_list(items, paths[0]))
    log.info("no %s: classes %s (the ids the raster holds)", flag("class_map"), _names(classes))
    return classes


def warn_other_names(path: str, listed: str | None, class_map: ClassMap) -> None:
    """Warn when a class raster `predict` wrote (`listed`: its CLASSES_TAG) names its classes
    otherwise than the class map given for it (another model's map, a renamed class): the
    polygons take the map's names."""
    try:
        written = [str(c["name"]) for c in json.loads(listed)] if listed else None
    except (ValueError, TypeError, KeyError):
        return  # a damaged tag: the class map given stands
    given = [c.name for c in class_map.classes]
    if written is None or written == given:
        return
    differ = [
        i for i in range(max(len(written), len(given))) if written[i : i + 1] != given[i : i + 1]
    ]
    i = differ[0]
    its = repr(written[i]) if i < len(written) else "no class"
    log.warning(
        "%s names its classes otherwise than %s (class %d: %s where the map has %s): the "
        "polygons take the map's names; leave %s out to use the raster's",
        path, flag("class_map"), i, its, repr(given[i]) if i < len(given) else "no class",
        flag("class_map"),
    )  # fmt: skip


def _names(classes: ClassMap) -> str:
    return ", ".join(f"{c.id} {c.name}" for c in classes.classes)
