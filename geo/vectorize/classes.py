"""The classes of a class raster given without a class map.

A class raster `predict` wrote names its classes in its metadata (`CLASSES_TAG`); any other is read
for the class ids it holds: 0 is background, a single other id is one class named after the file,
more are each named by their id; the raster's colour table gives their colours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from geo.contracts.classes import CLASSES_TAG, IGNORE, ClassMap, parse_class_list
from geo.errors import InputError
from geo.io.codes import band_codes
from geo.io.raster import open_raster
from geo.options import flag

log = logging.getLogger(__name__)
NOT_CLASS_IDS = (
    "a class raster holds class ids (predict's NAME_classes.tif, not NAME_probability.tif)"
)


def raster_class_map(path: str) -> ClassMap:
    """The classes `predict` wrote into the class raster at `path`, else one per id it holds
    (InputError for values that are no class ids)."""
    with open_raster(path) as src:
        listed = src.tags().get(CLASSES_TAG)
    if listed is not None:
        source = f"{path} ({CLASSES_TAG})"
        try:
            document = json.loads(listed)
        except ValueError:
            raise InputError(f"{source}: not JSON; give {flag('class_map')}") from None
        classes = ClassMap(parse_class_list(document, source))
        log.info("%s: classes %s, as predict wrote them", path, _names(classes))
        return classes
    codes, colors, _ = band_codes(path, "class ids", NOT_CLASS_IDS)
    ids = sorted(c for c in codes if c != IGNORE)
    wrong = [c for c in ids if c < 0 or c >= IGNORE or c != int(c)]
    if wrong:
        shown = ", ".join(str(c) for c in wrong[:5]) + (", ..." if len(wrong) > 5 else "")
        raise InputError(
            f"{path}: holds value(s) {shown}, which are no class ids (whole numbers 0 to "
            f"{IGNORE - 1}); {NOT_CLASS_IDS}"
        )
    objects = [int(c) for c in ids if c != 0]
    top = max(objects, default=1)  # a raster of background alone: one class, after the file
    items = [{"id": 0, "name": "background"}]
    for i in range(1, top + 1):
        label = Path(path).stem if len(objects) <= 1 and i == top else str(i)
        items.append({"id": i, "name": label, **({"color": colors[i]} if i in colors else {})})
    classes = ClassMap(parse_class_list(items, path))
    log.info("no %s: classes %s (the ids the raster holds)", flag("class_map"), _names(classes))
    return classes


def _names(classes: ClassMap) -> str:
    return ", ".join(f"{c.id} {c.name}" for c in classes.classes)
