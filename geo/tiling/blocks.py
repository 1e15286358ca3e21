"""Tile blocks and chains, the units of tiling work.

A block is a run of neighbouring tiles of one grid row: its tiles share their rows, so the block
reads its scene pixels once, as one strip (one GDAL read: no overlap along the row is decoded
twice), and cuts its tiles from it. A chain is a run of blocks one under the other (the same
columns, consecutive grid rows), read through one open dataset: GDAL keeps the source blocks it
decoded for a strip in its block cache, so the rows where a strip overlaps the one above are not
decoded again. A chain reads, labels and samples its strips on its own thread while a writer
thread writes the block before (the codec releases the GIL), so reading and compressing overlap.

Labels are made per tile by the label source: a strip rasterised at once would place pixels
from another origin, and a polygon edge through a pixel centre (a 45 degree edge of polygons
drawn on the grid) could fall the other way; per tile, every label is exactly what it always was.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zarr
from rasterio.io import DatasetReader
from rasterio.windows import Window

from convlora.files import atomic_write_json
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import open_arrays
from geo.io.raster import Pixels, SceneInfo, fill_value, open_raster, read_window
from geo.tiling import stats
from geo.tiling.inputs import LabelSource
from geo.tiling.labels import WindowLabels
from geo.tiling.plan import Tile
from geo.tiling.timing import StageSeconds

BLOCK_TILES = 8  # most tiles per block: the unit of progress and of resuming
STRIP_BYTES = 64 * 2**20  # most scene pixels (bytes) a block holds; a larger tile is a block
CHAIN_BLOCKS = 4  # most blocks per chain: the unit of Dask work
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
        blocks += _even_runs(list(group), most, Block)
    return blocks


class Chain(NamedTuple):
    """Blocks of the same scene columns, top to bottom."""

    blocks: tuple[Block, ...]

    @property
    def scene(self) -> int:
        return self.blocks[0].scene

    @property
    def tiles(self) -> int:
        return sum(len(b.tiles) for b in self.blocks)


def plan_chains(blocks: list[Block]) -> list[Chain]:
    """The blocks in chains of at most CHAIN_BLOCKS, each of blocks over the same columns of a
    scene in grid row order, split into chains of even size."""
    columns: dict[tuple[int, int, int], list[Block]] = {}
    for block in blocks:
        key = (block.scene, block.tiles[0].grid_col, block.tiles[-1].grid_col)
        columns.setdefault(key, []).append(block)
    return [c for column in columns.values() for c in _even_runs(column, CHAIN_BLOCKS, Chain)]


def _even_runs(items: list[Any], most: int, run: Callable[[tuple[Any, ...]], Any]) -> list[Any]:
    """`items` split into as few runs of even size as hold at most `most` each."""
    size = -(-len(items) // -(-len(items) // most))  # ceil(len / number of runs)
    return [run(tuple(items[i : i + size])) for i in range(0, len(items), size)]


class ChainResult(NamedTuple):
    """A finished chain: a summary row per tile, a statistics sample (`stats.sample_core`) by
    tile, and the seconds each stage took."""

    rows: list[dict[str, Any]]
    samples: dict[int, np.ndarray]
    seconds: StageSeconds


class _Cut(NamedTuple):
    """A block's tiles cut from its strip, ready to be written."""

    images: list[np.ndarray]
    labels: list[np.ndarray]
    valid: list[np.ndarray]


class Job(NamedTuple):
    """What a chain needs besides its blocks: where to write, how to read and sample."""

    store: str
    progress_dir: str
    bands: list[int]
    dtype: str
    n_classes: int
    budget: int  # pixels each scene's tiles sample for the statistics together
    seed: int


def tile_chain(job: Job, scene: SceneInfo, source: LabelSource, chain: Chain) -> ChainResult:
    """Read each block's strip, cut, label, sample and write its tiles, then write its marker
    (the tiles' summary rows): a block with a marker is complete in the store."""
    seconds, written = StageSeconds(), StageSeconds()
    arrays = tuple(_Writer(a) for a in open_arrays(job.store))
    rows: list[dict[str, Any]] = []
    samples: dict[int, np.ndarray] = {}
    with (
        open_raster(scene.path) as src,
        source.reader() as read_labels,
        ThreadPoolExecutor(1, thread_name_prefix="tile-writer") as writer,
    ):
        share = stats.sample_share(scene, job.budget)
        pending: Future[None] | None = None
        for block in chain.blocks:
            pixels = _read(src, scene, block, job, seconds)
            cut = _cut(block, pixels, read_labels, job, share, seconds, rows, samples)
            if pending is not None:
                pending.result()  # one block written while the next is read: bounded memory
            marker = Path(job.progress_dir) / block.marker
            summaries = rows[-len(block.tiles) :]
            pending = writer.submit(_write, arrays, block, cut, summaries, marker, written)
        if pending is not None:
            pending.result()
    seconds.add(written)
    return ChainResult(rows, samples, seconds)


def sample_tiles(job: Job, scene: SceneInfo, tiles: list[Tile]) -> ChainResult:
    """The statistics samples of tiles an earlier run wrote, each tile's core read alone."""
    seconds = StageSeconds()
    with seconds("statistics"):
        share = stats.sample_share(scene, job.budget)
        cores = [(t.index, t.core) for t in tiles]
        samples = stats.sample_cores(scene, job.bands, job.dtype, cores, share, job.seed)
    return ChainResult([], dict(zip([t.index for t in tiles], samples, strict=True)), seconds)


def _read(
    src: DatasetReader, scene: SceneInfo, block: Block, job: Job, seconds: StageSeconds
) -> Pixels:
    """A block's strip of pixels."""
    fill = fill_value(job.dtype, scene.nodata)
    with seconds("read"):
        return read_window(src, block.window, job.bands, job.dtype, fill)


def _cut(
    block: Block,
    pixels: Pixels,
    read_labels: WindowLabels,
    job: Job,
    share: float,
    seconds: StageSeconds,
    rows: list[dict[str, Any]],
    samples: dict[int, np.ndarray],
) -> _Cut:
    """A block's tiles cut from its strip and labelled; their summary rows and statistics
    samples appended to `rows` and `samples`."""
    strip = block.window
    cut = _Cut([], [], [])
    for tile in block.tiles:
        cols = _cols(tile, strip)
        valid = pixels.valid[:, cols]
        with seconds("labels"):
            label, unmapped = read_labels(tile.window)
            label[~valid] = IGNORE
            core = _core(tile, strip)
            infinite = int(np.count_nonzero(pixels.infinite[core]))
            rows.append(_summary(tile.index, label, valid, unmapped, infinite, job.n_classes))
        with seconds("statistics"):
            data, inside = pixels.data[(slice(None), *core)], pixels.valid[core]
            samples[tile.index] = stats.sample_core(data, inside, share, job.seed, tile.index)
        cut.images.append(pixels.data[:, :, cols])
        cut.labels.append(label)
        cut.valid.append(valid)
    return cut


def _write(
    arrays: tuple[_Writer, ...],
    block: Block,
    cut: _Cut,
    rows: list[dict[str, Any]],
    marker: Path,
    seconds: StageSeconds,
) -> None:
    """Write a block's tiles into the store's arrays, then its marker."""
    with seconds("write"):
        for writer, tiles in zip(arrays, cut, strict=True):
            for tile, values in zip(block.tiles, tiles, strict=True):
                writer.write(tile.index, values)
        atomic_write_json(marker, rows)


class _Writer:
    """Writes tiles into one of the store's arrays, one chunk each, one write a tile (Zarr
    writes a chunk that is all of a write as it is; in a write of several chunks it copies
    each into a new chunk filled with the fill value first). Zarr leaves out a chunk that
    holds only the fill value, and to know it compares every chunk with the fill value on its
    one event-loop thread (a slow strided comparison, ~2 ms a 1024 px uint8 tile): tiles seen
    here to hold other values skip that scan, the others go through it (and are left out, or
    deleted where an earlier run wrote them), so the store is exactly what Zarr writes."""

    def __init__(self, array: zarr.Array[Any]) -> None:
        self.array, self.fill = array, array.fill_value
        self.unchecked = array.with_config({"write_empty_chunks": True})

    def write(self, index: int, tile: np.ndarray) -> None:
        """Tile `index` of the array (copied into one block of memory for the codec)."""
        target = self.array if self._only_fill(tile) else self.unchecked
        target[index : index + 1] = np.ascontiguousarray(tile)[np.newaxis]

    def _only_fill(self, tile: np.ndarray) -> bool:
        """Whether a tile holds only the fill value (NaN matching NaN), as Zarr decides it; its
        first row tells most tiles apart without a scan of the whole tile."""
        if isinstance(self.fill, np.floating) and np.isnan(self.fill):
            return bool(np.isnan(tile[..., 0, :]).all() and np.isnan(tile).all())
        return not (np.any(tile[..., 0, :] != self.fill) or np.any(tile != self.fill))


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
