"""Objects of a class raster, streamed band by band and whole across band seams.

The class raster is read in bands of rows. Seeds (4-connected regions of each object class) are
numbered per band and joined across each seam with a union-find; boundary pixels are given back
to their objects (`geo.vectorize.objects`) with `reach` rows of the bands above and below as
context, so the objects do not depend on where the seams lie. Each band's object pixels become
polygon pieces in pixel coordinates; an object is complete once no later band can reach it, and
its pieces are then unioned. Complete objects are handed out in batches, each with the pixels of
other objects that touch it (`Batch.context`), so that a batch can be simplified alone and still
meet its neighbours edge for edge. Memory holds three bands plus the objects still open and the
complete ones not yet handed out (at most `batch_objects`), never the whole raster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from rasterio.io import DatasetReader
from rasterio.windows import Window

from geo.contracts.classes import IGNORE
from geo.io.raster import open_raster
from geo.vectorize.objects import grow, seeds

BATCH_OBJECTS = 5000
"""Complete objects held before they are handed out. On a 20000 x 20000 px lattice of FTW field
predictions (26,300 fields), the peak RSS of `vectorize` was 828 MiB with batches of 20,000
objects and 770 MiB with 5,000 (a 2000-row strip of it: 664 MiB), in the same time."""


@dataclass
class Region:
    """One object: its class, outline in scene pixel coordinates, pixel count, summed score
    (0..255 per pixel; None without a score raster) and first pixel in scan order (row, col)."""

    class_id: int
    geometry: shapely.Polygon
    pixels: int
    score_sum: float | None
    first: tuple[int, int]


@dataclass
class Batch:
    """Complete objects, and the pixels (row, col) of other objects that touch them."""

    regions: list[Region]
    context: np.ndarray  # (N, 2) int64


@dataclass
class _Object:
    """The pieces of one provisional object (seeds numbered in one band) found so far."""

    class_id: int
    pieces: list[shapely.Geometry] = field(default_factory=list)
    pixels: int = 0
    score_sum: float = 0.0
    first: int = -1  # flat index (row * width + col) of the first pixel


@dataclass
class _Band:
    """One band of rows: classes, scores, and seeds numbered in the run's id space."""

    row: int
    classes: np.ndarray
    scores: np.ndarray | None
    seeds: np.ndarray


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

    def roots(self, ids: np.ndarray) -> np.ndarray:
        """`find` of every id of an array."""
        unique, inverse = np.unique(ids, return_inverse=True)
        found = np.fromiter((self.find(int(x)) for x in unique), np.int64, len(unique))
        return found[inverse].reshape(ids.shape)


def regions(
    classes_path: str | Path,
    scores_path: str | Path | None = None,
    *,
    boundary_id: int | None = None,
    reach: int = 0,
    band_rows: int = 512,
    batch_objects: int = BATCH_OBJECTS,
    rows_read: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Yield every object of the class raster once, complete, in batches (at least one);
    `rows_read(n)` is told of every band of rows read (progress).

    Objects are the 4-connected regions of every class but 0 (background), 255 (nodata) and
    `boundary_id`; with a boundary class, its pixels within `reach` steps of an object join it.
    """
    stream = _Stream(boundary_id, reach if boundary_id is not None else 0, batch_objects)
    band_rows = max(band_rows, stream.reach, 1)
    with ExitStack() as stack:
        cls_src = stack.enter_context(open_raster(str(classes_path)))
        scores_src = (
            None if scores_path is None else stack.enter_context(open_raster(str(scores_path)))
        )
        stream.width, height = cls_src.width, cls_src.height
        bands: list[_Band | None] = [None, None, None]  # the bands above, in work and below
        for row in range(0, height, band_rows):
            read = Window(0, row, stream.width, min(band_rows, height - row))
            cls = class_ids(cls_src, read)
            scores = None if scores_src is None else scores_src.read(1, window=read)
            bands = [bands[1], bands[2], stream.load(row, cls, scores, bands[2])]
            if rows_read is not None:
                rows_read(read.height)
            if bands[1] is not None:
                yield from stream.process(*bands, last=False)
        yield from stream.process(bands[1], bands[2], None, last=True)


def class_ids(src: DatasetReader, window: Window) -> np.ndarray:
    """A window of a class raster as uint8 class ids: pixels masked by its nodata value or
    mask, and NaN, are 255 (nodata), whatever the raster's type (an edited map may be int16
    with nodata -1, or float32 from a raster calculator)."""
    data = src.read(1, window=window, masked=True)
    if data.dtype == np.uint8:  # predict's own class rasters, nodata 255 already
        return np.ma.filled(data, IGNORE)
    ids = np.ma.filled(data.astype(np.float64), np.nan)
    return np.where(np.isnan(ids), IGNORE, ids).astype(np.uint8)


class _Stream:
    """The state of one pass over a class raster (see `regions`)."""

    def __init__(self, boundary_id: int | None, reach: int, batch_objects: int) -> None:
        self.boundary_id, self.reach, self.batch_objects = boundary_id, reach, batch_objects
        self.width = 0
        self.uf = _UnionFind()
        self.objects: dict[int, _Object] = {}  # provisional id -> pieces so far
        self.next_id = 1
        self.class_of: dict[int, int] = {}  # provisional id -> class, until its first piece
        self.has_scores = False
        self.touching: list[np.ndarray] = []  # (owner, other, row, col): other's pixel
        self.last_row: np.ndarray | None = None  # object ids of the last row polygonised
        self.closed: list[set[int]] = []  # roots complete after each band, oldest first

    def load(
        self, row: int, cls: np.ndarray, scores: np.ndarray | None, above: _Band | None
    ) -> _Band:
        """Number a band's seeds after those of earlier bands and join them across the seam."""
        skip = [] if self.boundary_id is None else [self.boundary_id]
        labels, class_of = seeds(cls, skip)
        labels[labels > 0] += self.next_id - 1
        self.class_of.update(zip(range(self.next_id, self.next_id + len(class_of)),
                                 class_of.tolist(), strict=True))  # fmt: skip
        self.next_id += len(class_of)
        self.has_scores = scores is not None
        if above is not None:
            top, bottom = above.seeds[-1], labels[0]
            joined = (top > 0) & (bottom > 0) & (above.classes[-1] == cls[0])
            for a, b in np.unique(np.stack([top[joined], bottom[joined]]), axis=1).T:
                self.uf.union(int(a), int(b))
        return _Band(row, cls, scores, labels)

    def process(
        self, above: _Band | None, band: _Band | None, below: _Band | None, *, last: bool
    ) -> Iterator[Batch]:
        """Polygonise `band` (with context rows from its neighbours), then hand out a batch when
        enough objects are complete (all of them after the last band)."""
        if band is not None:
            ids = self._objects_of(above, band, below)
            self._polygonise(band, ids)
            self._record_touching(band.row, ids)
            self.closed.append(self._newly_closed(band, below))
        # objects closed before this band: every neighbour of theirs has been polygonised
        ready = set().union(*self.closed[:-1]) if not last else set().union(*self.closed)
        if last or len(ready) >= self.batch_objects:  # the last batch may be empty
            self.closed = [] if last else self.closed[-1:]
            yield self._batch(ready)

    def _objects_of(self, above: _Band | None, band: _Band, below: _Band | None) -> np.ndarray:
        """Object ids of the band's pixels: seeds, and boundary pixels given back to them."""
        if self.reach == 0:
            return band.seeds
        r = self.reach
        parts = [p for p in (above, band, below) if p is not None]
        head = min(r, above.seeds.shape[0]) if above is not None else 0
        labels = np.concatenate(
            [p.seeds[-r:] if p is above else p.seeds[:r] if p is below else p.seeds for p in parts]
        )
        classes = np.concatenate(
            [p.classes[-r:] if p is above else p.classes[:r] if p is below else p.classes
             for p in parts]
        )  # fmt: skip
        grown = grow(labels, classes == self.boundary_id, r)
        return grown[head : head + band.seeds.shape[0]]

    def _polygonise(self, band: _Band, ids: np.ndarray) -> None:
        """Pieces, pixel counts, score sums and first pixels of the band's objects."""
        at = np.flatnonzero(ids)
        unique, first, inverse = np.unique(ids.ravel()[at], return_index=True, return_inverse=True)
        unique, first = np.concatenate([[0], unique]), np.concatenate([[-1], at[first]])
        local = np.zeros(ids.shape, dtype=np.int32)  # 0: no object, k: unique[k]
        local.ravel()[at] = inverse + 1
        flat = local.ravel()
        pixels = np.bincount(flat, minlength=len(unique))
        scores = (
            np.bincount(flat, weights=band.scores.ravel(), minlength=len(unique))
            if band.scores is not None
            else np.zeros(len(unique))
        )
        offset = band.row * self.width
        for k in range(1, len(unique)):
            pid = int(unique[k])
            obj = self.objects.get(pid)
            if obj is None:
                start = offset + int(first[k])
                obj = self.objects[pid] = _Object(self.class_of.pop(pid), first=start)
            obj.pixels += int(pixels[k])
            obj.score_sum += float(scores[k])
        shifted = Affine.translation(0, band.row)
        for shape, value in features.shapes(local, local > 0, 4, shifted):
            self.objects[int(unique[int(value)])].pieces.append(shapely.geometry.shape(shape))

    def _record_touching(self, row: int, ids: np.ndarray) -> None:
        """Pairs of 4-adjacent pixels of different objects in the band and across its top."""
        above = self.last_row if self.last_row is not None else np.zeros(self.width, ids.dtype)
        pairs = [
            _pairs(ids[:, :-1], ids[:, 1:], (0, 0), (0, 1), row),  # left | right
            _pairs(ids[:-1], ids[1:], (0, 0), (1, 0), row),  # above / below, inside the band
            _pairs(above[None], ids[:1], (-1, 0), (0, 0), row),  # across the band's top
        ]
        self.last_row = ids[-1].copy()
        self.touching.extend(p for p in pairs if len(p))

    def _newly_closed(self, band: _Band, below: _Band | None) -> set[int]:
        """Roots of the objects that no later band can reach: no seed in the band's last
        `reach` rows nor in the band below (every object, after the last band)."""
        still = [] if below is None else [band.seeds[-max(self.reach, 1) :], below.seeds]
        open_roots = {self.uf.find(int(x)) for s in still for x in np.unique(s[s > 0])}
        done = set().union(*self.closed) if self.closed else set()
        return {
            root
            for pid in self.objects
            if (root := self.uf.find(pid)) not in open_roots and root not in done
        }

    def _batch(self, roots: set[int]) -> Batch:
        """Merge and hand out the complete objects of `roots`, with their touching pixels."""
        members: dict[int, list[int]] = {}
        for pid in list(self.objects):
            root = self.uf.find(pid)
            if root in roots:
                members.setdefault(root, []).append(pid)
        found = []
        for pids in members.values():
            parts = [self.objects.pop(p) for p in pids]
            pieces = [g for part in parts for g in part.pieces]
            geometry = pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)
            first = min(p.first for p in parts)
            score = sum(p.score_sum for p in parts) if self.has_scores else None
            found.append(Region(
                parts[0].class_id, geometry, sum(p.pixels for p in parts), score,
                divmod(first, self.width),
            ))  # fmt: skip
        context = self._context(roots)
        for pids in members.values():
            for p in pids:
                self.uf.parent.pop(p, None)
        found.sort(key=lambda r: r.first)
        return Batch(found, context)

    def _context(self, roots: set[int]) -> np.ndarray:
        """Pixels of other objects that touch the objects of `roots`; pairs still needed by
        objects outside `roots` are kept."""
        if not self.touching:
            return np.zeros((0, 2), dtype=np.int64)
        table = np.concatenate(self.touching)
        owner = np.isin(self.uf.roots(table[:, 0]), list(roots))
        other = np.isin(self.uf.roots(table[:, 1]), list(roots))
        self.touching = [table[~owner]] if (~owner).any() else []
        return np.unique(table[owner & ~other][:, 2:], axis=0)


def _pairs(
    a: np.ndarray, b: np.ndarray, a_at: tuple[int, int], b_at: tuple[int, int], row: int
) -> np.ndarray:
    """(owner, other, row, col of other's pixel), both ways, for the pixels of two aligned
    views of object ids that hold different objects; `a_at` and `b_at` are the views'
    (row, col) offsets from the pixel index, `row` the band's first row."""
    r, c = np.nonzero((a != b) & (a > 0) & (b > 0))
    one, two = a[r, c], b[r, c]
    ra, ca, rb, cb = r + a_at[0] + row, c + a_at[1], r + b_at[0] + row, c + b_at[1]
    return np.concatenate(
        [np.stack([one, two, rb, cb], axis=1), np.stack([two, one, ra, ca], axis=1)]
    ).astype(np.int64)
