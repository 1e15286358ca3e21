"""Tile blocks, the unit of tiling work: a run of neighbouring tiles of one grid row.

The tiles of a block share their rows, so the block reads its scene pixels once, as one strip
(one GDAL read: no overlap along the row is read or decoded twice), and cuts its tiles from it.
Each tile's image goes to the store as soon as it is cut (Zarr compresses it in a worker thread;
the codec releases the GIL, so the other worker reads its strip meanwhile); labels and valid
masks, small, go in one write per block (`_Writer`). Labels are still made per tile by the
label source: a strip rasterised at once would place pixels from another origin, and a polygon
edge through a pixel centre (a 45 degree edge of polygons drawn on the grid) could fall the
other way; per tile, every label is exactly what it always was.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
import zarr
from rasterio.windows import Window

from convlora.files import atomic_write_json
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import open_arrays
from geo.io.raster import SceneInfo, fill_value, open_raster, read_window
from geo.tiling.inputs import LabelSource
from geo.tiling.plan import Tile
from geo.tiling.timing import StageSeconds

BLOCK_TILES = 8  # most tiles per block: the unit of progress and of resuming
STRIP_BYTES = 64 * 2**20  # most scene pixels (bytes) a block holds; a larger tile is a block
FEW_CLASSES = 16  # up to this many classes, tile summaries count pixels class by class


class Block(NamedTuple):
    """Neighbouring tiles of one grid row, left to right (consecutive store indexes)."""

    tiles: tuple[Tile, ...]

    @property
    def scene(self) -> int:
        return self.tiles[0].scene

    @property
    def window(self) -> Window:
        """The strip of scene pixels under all the block's tiles."""
        first, last = self.tiles[0].window, self.tiles[-1].window
        width = last.col_off + last.width - first.col_off
        return Window(first.col_off, first.row_off, width, first.height)

    @property
    def marker(self) -> str:
        """The name of the file that says the block is done."""
        return f"block-{self.tiles[0].index}-{self.tiles[-1].index}.json"


def plan_blocks(tiles: list[Tile], tile_bytes: int) -> list[Block]:
    """Each grid row's tiles in blocks of at most BLOCK_TILES tiles and STRIP_BYTES of pixels
    (`tile_bytes` per tile), the row split into blocks of even size."""
    most = max(1, min(BLOCK_TILES, STRIP_BYTES // max(1, tile_bytes)))
    blocks = []
    for _, group in itertools.groupby(tiles, key=lambda t: (t.scene, t.grid_row)):
        row = list(group)
        size = -(-len(row) // -(-len(row) // most))  # ceil(len / number of blocks)
        blocks += [Block(tuple(row[i : i + size])) for i in range(0, len(row), size)]
    return blocks


class BlockResult(NamedTuple):
    """A finished block: one summary row per tile, and the seconds each stage took."""

    rows: list[dict[str, Any]]
    seconds: StageSeconds


def tile_block(
    store: str,
    scene: SceneInfo,
    source: LabelSource,
    bands: list[int],
    dtype: str,
    n_classes: int,
    block: Block,
    marker: str,
) -> BlockResult:
    """Read a block's strip, cut, label and write its tiles, then write its `marker` (the tiles'
    summary rows): a block with a marker is complete in the store."""
    seconds = StageSeconds()
    images, labels, valids = (_Writer(a) for a in open_arrays(store))
    strip = block.window
    tile_labels, rows = [], []
    with open_raster(scene.path) as src, source.reader() as read_labels:
        with seconds("read"):
            pixels = read_window(src, strip, bands, dtype, fill_value(dtype, scene.nodata))
        for tile in block.tiles:
            cols = _cols(tile, strip)
            valid = pixels.valid[:, cols]
            with seconds("labels"):
                label, unmapped = read_labels(tile.window)
                label[~valid] = IGNORE
                infinite = int(np.count_nonzero(pixels.infinite[_core(tile, strip)]))
                rows.append(_summary(tile.index, label, valid, unmapped, infinite, n_classes))
            tile_labels.append(label)
            with seconds("write"):
                images.write(tile.index, [pixels.data[:, :, cols]])
    with seconds("write"):
        first = block.tiles[0].index
        labels.write(first, tile_labels)
        valids.write(first, [pixels.valid[:, _cols(t, strip)] for t in block.tiles])
    atomic_write_json(marker, rows)
    return BlockResult(rows, seconds)


class _Writer:
    """Writes tiles into one of the store's arrays, one chunk each. Zarr leaves out a chunk that
    holds only the fill value, and to know it compares every chunk with the fill value on its
    one event-loop thread (a slow strided comparison, ~2 ms a 1024 px uint8 tile): tiles seen
    here to hold other values skip that scan, the others go through it (and are left out, or
    deleted where an earlier run wrote them), so the store is exactly what Zarr writes."""

    def __init__(self, array: zarr.Array[Any]) -> None:
        self.array, self.fill = array, array.fill_value
        self.unchecked = array.with_config({"write_empty_chunks": True})

    def write(self, first: int, tiles: list[np.ndarray]) -> None:
        """Tiles `first`, `first + 1`, ... of the array."""
        some_empty = any(self._only_fill(t) for t in tiles)
        target = self.array if some_empty else self.unchecked
        values = tiles[0][np.newaxis] if len(tiles) == 1 else np.stack(tiles)
        target[first : first + len(tiles)] = values

    def _only_fill(self, tile: np.ndarray) -> bool:
        """Whether a tile holds only the fill value (NaN matching NaN), as Zarr decides it."""
        if isinstance(self.fill, np.floating) and np.isnan(self.fill):
            return bool(np.isnan(tile).all())
        return not np.any(tile != self.fill)


def _cols(tile: Tile, strip: Window) -> slice:
    """A tile's columns in its block's strip."""
    start = int(tile.window.col_off - strip.col_off)
    return slice(start, start + int(tile.window.width))


def _core(tile: Tile, strip: Window) -> tuple[slice, slice]:
    """The rows and columns of a tile's core (the part of the scene that is its own) in its
    block's strip."""
    r = int(tile.core.row_off - strip.row_off)
    c = int(tile.core.col_off - strip.col_off)
    return slice(r, r + int(tile.core.height)), slice(c, c + int(tile.core.width))


def _summary(
    index: int,
    label: np.ndarray,
    valid: np.ndarray,
    unmapped: set[str],
    infinite: int,
    n_classes: int,
) -> dict[str, Any]:
    """A tile's summary row: label coverage, class pixels, valid share, codes in no class (the
    shares are pixel counts over the tile's size, as `mean()` of the masks gives them)."""
    labelled, counts = _class_pixels(label, n_classes)
    return {
        "tile": index,
        "label_coverage": labelled / label.size,
        "foreground_fraction": (labelled - counts[0]) / label.size,
        "valid_fraction": int(np.count_nonzero(valid)) / valid.size,
        "class_pixels": counts,
        "unmapped": sorted(unmapped),
        "infinite": infinite,
    }


def _class_pixels(label: np.ndarray, n_classes: int) -> tuple[int, list[int]]:
    """How many pixels are labelled (not IGNORE), and `np.bincount` of their class ids: counted
    class by class where there are few classes (a comparison per class is faster than
    bincount's cast of every pixel to a 64-bit index)."""
    labelled = label.size - int(np.count_nonzero(label == IGNORE))
    if n_classes <= FEW_CLASSES:
        counts = [int(np.count_nonzero(label == c)) for c in range(n_classes)]
        if sum(counts) == labelled:  # else ids beyond the class map, counted below
            return labelled, counts
    return labelled, np.bincount(label[label != IGNORE], minlength=n_classes).tolist()
