"""The distinct values of a raster band that holds codes (labels, class ids), with their colours.

Read in strips of rows, so a label raster of any size is read in bounded memory; a raster of too
many values to be classes (a continuous raster) is refused as soon as that is clear.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geo.errors import InputError
from geo.io.raster import open_raster, read_failed
from geo.options import flag

log = logging.getLogger(__name__)

MAX_VALUE_CLASSES = 64  # distinct label values (a field's, a raster's codes) taken as classes
READ_PIXELS = 1 << 24  # pixels read at a time while looking for codes
LARGE = 1 << 26  # rasters of more pixels say in the log that their codes are being read


def band_codes(
    path: str,
    what: str = "label codes",
    advice: str = f"give a {flag('class_map')} that groups them",
) -> tuple[set[float], dict[float, str], str]:
    """The distinct valid codes of a raster's first band, the colours its colour table gives
    them, and its data type; InputError, saying `advice`, for more than `MAX_VALUE_CLASSES`
    (`what` names the codes in messages)."""
    try:
        with open_raster(path) as src:
            if src.width * src.height > LARGE:
                log.info("%s: reading its %s (no %s)", path, what, flag("class_map"))
            codes, dtype = _distinct(src, path, what, advice), src.dtypes[0]
            try:
                table = src.colormap(1)
            except ValueError:  # no colour table
                table = {}
    except RasterioIOError:
        raise InputError(f"{path}: not a raster GDAL can read") from None
    colors = {c: "#{:02x}{:02x}{:02x}".format(*table[int(c)][:3]) for c in codes if c in table}
    return codes, colors, dtype


def _distinct(src: Any, path: str, what: str, advice: str) -> set[float]:
    """The distinct codes of band 1 outside nodata, read in strips of rows; InputError as soon
    as there are too many to be classes."""
    rows = max(1, READ_PIXELS // src.width)
    codes: set[float] = set()
    for row in range(0, src.height, rows):
        window = Window(0, row, src.width, min(rows, src.height - row))
        try:
            values = src.read(1, window=window, masked=True).compressed()
        except RasterioIOError as exc:
            raise read_failed(path, exc, f" at row {row}") from exc
        if values.dtype == np.uint8:
            found = np.flatnonzero(np.bincount(values, minlength=256))
        else:
            found = np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)
        codes.update(found.tolist())
        if len(codes) > MAX_VALUE_CLASSES + 1:  # background and the classes
            raise InputError(
                f"{path}: holds more than {MAX_VALUE_CLASSES} distinct {what}, too many for "
                f"classes (a continuous raster?); {advice}"
            )
    return codes
