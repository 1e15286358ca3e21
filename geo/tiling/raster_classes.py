"""The classes of label rasters given without a class map, read from the codes they hold.

A mask of one code on 0 (0/1, 0/255) is one class named after the file on background; more codes
are one class each, named by the code, after background (code 0). Codes the raster marks as
nodata are left out (they stay *ignore*), and so is 255 in 8-bit rasters of other codes besides
(the *ignore* of segmentation masks); a colour table gives the classes their colours.
"""

from __future__ import annotations

import logging
from typing import Any

from geo.contracts.classes import value_key
from geo.errors import InputError
from geo.io.codes import band_codes
from geo.options import flag

log = logging.getLogger(__name__)

IGNORE_CODE = 255  # in 8-bit masks of several codes: no label (a 0/255 mask's 255 is its class)


def raster_classes(paths: list[str], name: str | None) -> list[dict[str, Any]]:
    """Class map entries for label rasters without a class map: background (code 0), then each
    other code (but `IGNORE_CODE` of 8-bit rasters beside others): one named `name` (the files'
    name, None when they differ) when it is the only one, else each named by its code;
    InputError for more than `MAX_VALUE_CLASSES` codes or none."""
    codes: set[float] = set()
    colors: dict[float, str] = {}
    bytes_only = True
    for path in paths:
        found, table, dtype = band_codes(path)
        codes |= found
        colors = {**table, **colors}
        bytes_only &= dtype == "uint8"
    if bytes_only and IGNORE_CODE in codes and codes - {0, IGNORE_CODE}:
        codes.discard(IGNORE_CODE)
        log.info(
            "%s: code %d beside other codes is taken as no label, as segmentation masks use it "
            "(give a %s to make it a class)",
            paths[0], IGNORE_CODE, flag("class_map"),
        )  # fmt: skip
    objects = sorted(c for c in codes if c != 0)
    if not objects:
        files = f"{paths[0]}: holds" if len(paths) == 1 else f"{len(paths)} label rasters hold"
        raise InputError(
            f"{files} only code 0 (and nodata), no class to learn; give a "
            f"{flag('class_map')} if 0 is a class"
        )
    background: dict[str, Any] = {"name": "background", **({"values": [0]} if 0 in codes else {})}
    classes = [background]
    for code in objects:
        key = value_key(code)
        label = name if name is not None and len(objects) == 1 else key
        classes.append(
            {"name": label, "values": [key], **({"color": colors[code]} if code in colors else {})}
        )
    return classes
