"""Objects of a class raster held in memory: connected regions of the object classes, with the
boundary pixels between them given back to the objects they outline.

Each object class's 4-connected regions are seeds. Boundary pixels then join the seed they touch,
one pixel step at a time through boundary pixels, for at most `reach` steps; a pixel reached from
several seeds in the same step takes the first of the pixel above, left, right and below. The
result depends only on the pixels within `reach` steps, so a band of rows with `reach` rows of
context on each side gives exactly the objects of the whole raster (`geo.vectorize.regions`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from geo.contracts.classes import IGNORE, ClassInfo, boundary_class

# (row, column) offsets of the neighbour a pixel takes its object from, first choice first
NEIGHBOURS = ((-1, 0), (0, -1), (0, 1), (1, 0))


def seeds(classes: np.ndarray, skip: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of each class but those in `skip` (and background 0 and nodata 255),
    numbered from 1 (int64), and the class of each (region i has class `of[i - 1]`)."""
    labels = np.zeros(classes.shape, dtype=np.int64)
    of: list[np.ndarray] = []
    skipped = {0, IGNORE, *skip}
    for value in np.flatnonzero(np.bincount(classes.ravel(), minlength=1)):
        if int(value) in skipped:
            continue
        lab, k = ndimage.label(classes == value)
        inside = lab > 0
        labels[inside] = lab[inside] + sum(len(o) for o in of)
        of.append(np.full(k, value, dtype=np.int64))
    return labels, np.concatenate([np.zeros(0, dtype=np.int64), *of])


def grow(labels: np.ndarray, boundary: np.ndarray, reach: int) -> np.ndarray:
    """`labels` with the `boundary` pixels within `reach` steps of an object given to it."""
    out = labels.copy()
    free = boundary & (out == 0)
    height, width = out.shape
    for _ in range(reach):
        if not free.any():
            break
        taken = np.zeros_like(out)
        for dr, dc in NEIGHBOURS:
            to = (slice(max(0, -dr), height - max(0, dr)), slice(max(0, -dc), width - max(0, dc)))
            at = (slice(max(0, dr), height - max(0, -dr)), slice(max(0, dc), width - max(0, -dc)))
            target, source = taken[to], out[at]
            take = free[to] & (target == 0) & (source > 0)
            target[take] = source[take]
        out[taken > 0] = taken[taken > 0]
        free &= taken == 0
    return out


def label_objects(classes: np.ndarray, boundary_id: int | None, reach: int) -> np.ndarray:
    """Object ids (int64, 0 for none) of a whole class array held in memory."""
    labels, _ = seeds(classes, [] if boundary_id is None else [boundary_id])
    if boundary_id is None or reach == 0:
        return labels
    return grow(labels, classes == boundary_id, reach)


def boundary_reach(classes: Sequence[ClassInfo], pixel_m: float) -> tuple[int | None, int]:
    """The boundary class id (None without one) and how many pixel steps its pixels are given
    back over: twice the boundary width (a boundary between two objects is twice as wide as the
    one outlining each), at least one step."""
    boundary = boundary_class(classes)
    if boundary is None or boundary.boundary is None:
        return None, 0
    return boundary.id, max(1, math.ceil(2 * boundary.boundary.pixels(pixel_m)))
