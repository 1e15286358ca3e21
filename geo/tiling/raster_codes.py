"""The classes of label rasters given without a class map, read from the codes they hold.

A mask of one code on 0 (0/1, 0/255) is one class named after the file on background; more codes
are one class each, named by the code, after background (code 0). Codes the raster marks as
nodata are left out (they stay *ignore*), and so is 255 in 8-bit rasters of other codes besides
(the *ignore* of segmentation masks); a colour table gives the classes their colours.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geo.contracts.classes import value_key
from geo.errors import InputError
from geo.io.raster import check_exists, open_raster
from geo.options import flag

log = logging.getLogger(__name__)

MAX_VALUE_CLASSES = 64  # distinct label values (a field's, a raster's codes) taken as classes
READ_PIXELS = 1 << 24  # pixels read at a time while looking for codes
LARGE = 1 << 26  # label rasters of more pixels say in the log that their codes are being read
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
        found, table, dtype = _codes(path)
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
        classes.append({"name": label, "values": [key], **_color(colors.get(code))})
    return classes


def _color(rgba: str | None) -> dict[str, str]:
    return {} if rgba is None else {"color": rgba}


def _codes(path: str) -> tuple[set[float], dict[float, str], str]:
    """The distinct valid codes of a label raster's first band, the colours its colour table
    gives them, and its data type."""
    check_exists(path, "labels file")
    try:
        with open_raster(path) as src:
            if src.width * src.height > LARGE:
                log.info("%s: reading its label codes (no %s)", path, flag("class_map"))
            codes, dtype = _distinct(src, path), src.dtypes[0]
            try:
                table = src.colormap(1)
            except ValueError:  # no colour table
                table = {}
    except RasterioIOError:
        raise InputError(f"{path}: not a raster GDAL can read") from None
    colors = {c: "#{:02x}{:02x}{:02x}".format(*table[int(c)][:3]) for c in codes if c in table}
    return codes, colors, dtype


def _distinct(src: Any, path: str) -> set[float]:
    """The distinct codes of band 1 outside nodata, read in strips of rows; InputError as soon
    as there are too many to be classes."""
    rows = max(1, READ_PIXELS // src.width)
    codes: set[float] = set()
    for row in range(0, src.height, rows):
        window = Window(0, row, src.width, min(rows, src.height - row))
        values = src.read(1, window=window, masked=True).compressed()
        if values.dtype == np.uint8:
            found = np.flatnonzero(np.bincount(values, minlength=256))
        else:
            found = np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)
        codes.update(found.tolist())
        if len(codes) > MAX_VALUE_CLASSES + 1:  # background and the classes
            raise InputError(
                f"{path}: holds more than {MAX_VALUE_CLASSES} distinct label codes, too many "
                f"for classes (a continuous raster?); give a {flag('class_map')} that groups them"
            )
    return codes
