"""Connected regions of a class raster, streamed band by band and whole across band seams.

The class raster is read in bands of rows. Each band's regions (4-connected, per class) become
polygons in pixel coordinates; regions that meet across a band seam are joined with a union-find
on the seam's two pixel rows, and their pieces are unioned once no later band can extend them, so
the result equals polygonising the whole raster at once while memory holds one band of rows plus
the regions still open at its last row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from scipy import ndimage

from geo.contracts.classes import IGNORE
from geo.io.raster import open_raster


@dataclass
class Region:
    """A connected region of one class: its outline in scene pixel coordinates and its pixels."""

    class_id: int
    geometry: shapely.Polygon
    pixels: int
    score_sum: float  # sum of the probability raster's values (0..255) over the region


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while (up := self.parent.get(root, root)) != root:
            root = up
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def regions(
    classes_path: str | Path, probability_path: str | Path, *, band_rows: int = 512
) -> Iterator[Region]:
    """Yield every non-background region of the class raster once, complete, in scan order.

    Memory holds one band of rows plus the regions that still touch the band's last row.
    """
    uf = _UnionFind()
    pending: dict[int, Region] = {}
    prev_labels = prev_classes = None
    next_id = 1
    with open_raster(str(classes_path)) as cls_src, open_raster(str(probability_path)) as p_src:
        width, height = cls_src.width, cls_src.height
        for row in range(0, height, band_rows):
            n = min(band_rows, height - row)
            window = Window(0, row, width, n)
            cls = cls_src.read(1, window=window)
            prob = p_src.read(1, window=window)
            labels, count = _label(cls)
            ids = labels.ravel()
            pixels = np.bincount(ids, minlength=count + 1)
            scores = np.bincount(ids, weights=prob.ravel(), minlength=count + 1)
            class_of = np.zeros(count + 1, dtype=np.int64)
            class_of[ids] = cls.ravel()
            shifted = Affine.translation(0, row)
            for shape, value in features.shapes(labels, labels > 0, 4, shifted):
                local = int(value)
                pending[next_id - 1 + local] = Region(
                    int(class_of[local]),
                    shapely.geometry.shape(shape),
                    int(pixels[local]),
                    float(scores[local]),
                )
            if prev_labels is not None:
                joined = (prev_labels > 0) & (labels[0] > 0) & (prev_classes == cls[0])
                pairs = np.unique(np.stack([prev_labels[joined], labels[0][joined]]), axis=1)
                for above, below in pairs.T:
                    uf.union(int(above), next_id - 1 + int(below))
            last = labels[-1]
            prev_labels = np.where(last > 0, last + next_id - 1, 0)
            prev_classes = cls[-1]
            next_id += count
            still_open = (
                set() if row + n >= height else set(np.unique(prev_labels[prev_labels > 0]))
            )
            yield from _close(pending, uf, {uf.find(int(x)) for x in still_open})


def _label(cls: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of each class (background and nodata excluded), numbered from 1."""
    labels = np.zeros(cls.shape, dtype=np.int32)
    count = 0
    for value in np.unique(cls):
        if value in (0, IGNORE):
            continue
        lab, k = ndimage.label(cls == value)
        inside = lab > 0
        labels[inside] = lab[inside] + count
        count += k
    return labels, count


def _close(pending: dict[int, Region], uf: _UnionFind, open_roots: set[int]) -> Iterator[Region]:
    """Merge and yield the pending regions whose component no later band can reach."""
    groups: dict[int, list[int]] = {}
    for key in pending:
        root = uf.find(key)
        if root not in open_roots:
            groups.setdefault(root, []).append(key)
    for members in groups.values():
        parts = [pending.pop(k) for k in members]
        for k in members:
            uf.parent.pop(k, None)
        first = parts[0]
        geometry = first.geometry
        if len(parts) > 1:
            geometry = shapely.union_all([p.geometry for p in parts])
        yield Region(
            first.class_id,
            geometry,
            sum(p.pixels for p in parts),
            sum(p.score_sum for p in parts),
        )
