"""Tile blocks and chains, the units of tiling work.

A block is a run of neighbouring tiles of one grid row, the unit of progress and of resuming. A
chain is a run of blocks one under the other (the same columns, consecutive grid rows), read tile
by tile through one open dataset: GDAL keeps the source blocks it decoded in its block cache, so
the pixels tiles share with their neighbours, along the row and with the row above, are decoded
once, and each tile is read straight into the memory its chunk is compressed from. The chain's
thread reads, labels and samples tiles while a writer thread writes the ones before (the codec
and the file writes release the GIL).

Labels are made per tile by the label source: a strip rasterised at once would place pixels
from another origin, and a polygon edge through a pixel centre (a 45 degree edge of polygons
drawn on the grid) could fall the other way; per tile, every label is exactly what it always was.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from rasterio.io import DatasetReader

from convlora.files import atomic_write_json
from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import open_arrays
from geo.io.raster import SceneInfo, fill_value, open_raster, read_window
from geo.tiling import stats
from geo.tiling.chunks import ChunkFiles
from geo.tiling.inputs import LabelSource
from geo.tiling.labels import WindowLabels
from geo.tiling.plan import Tile
from geo.tiling.timing import StageSeconds

BLOCK_TILES = 8  # most tiles per block: the unit of progress and of resuming
STRIP_BYTES = 64 * 2**20  # most pixel bytes of a block's tiles; a larger tile is a block
CHAIN_BLOCKS = 4  # most blocks per chain: the unit of Dask work
WRITERS = 2  # writer threads per chain (a tile takes about twice as long to write as to read)
CHAIN_CACHE = 128 * 2**20  # GDAL block cache (bytes) while a chain reads: source blocks shared
# by neighbouring tiles (the overlap) stay decoded until the next tile reads them
FEW_CLASSES = 16  # up to this many classes, tile summaries count pixels class by class


class Block(NamedTuple):
    """Neighbouring tiles of one grid row, left to right (consecutive store indexes)."""

    tiles: tuple[Tile, ...]

    @property
    def scene(self) -> int:
        return self.tiles[0].scene

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


class Job(NamedTuple):
    """What a chain needs besides its blocks: where to write, how to read and sample."""

    store: str
    progress_dir: str
    bands: list[int]
    dtype: str
    n_classes: int
    budget: int  # pixels each scene's tiles sample for the statistics together
    seed: int
    scene_bands: dict[str, list[int]] = {}  # noqa: RUF012  (scenes whose bands lie elsewhere)

    def bands_of(self, scene: SceneInfo) -> list[int]:
        """The bands read from `scene`: the store's, at its own numbers where read by name."""
        return self.scene_bands.get(scene.path, self.bands)


def tile_chain(job: Job, scene: SceneInfo, source: LabelSource, chain: Chain) -> ChainResult:
    """Read, label, sample and write each tile of the chain, block after block, and after each
    block's tiles its marker (their summary rows): a block with a marker is complete in the
    store."""
    result = ChainResult([], {}, StageSeconds())
    arrays = tuple(ChunkFiles(a) for a in open_arrays(job.store))
    with (
        open_raster(scene.path, cache=CHAIN_CACHE) as src,
        source.reader() as read_labels,
        _Writers(len(chain.blocks[0].tiles)) as writers,
    ):
        tiling = _TileReader(job, scene, src, read_labels, result)
        for block in chain.blocks:
            for tile in block.tiles:
                writers.tile(_write, arrays, tile.index, tiling.read(tile))
            marker = Path(job.progress_dir) / block.marker
            writers.marker(atomic_write_json, marker, result.rows[-len(block.tiles) :])
    result.seconds.add(writers.seconds)
    return result


def sample_tiles(job: Job, scene: SceneInfo, tiles: list[Tile]) -> ChainResult:
    """The statistics samples of tiles an earlier run wrote, each tile's core read alone."""
    seconds = StageSeconds()
    with seconds("statistics"):
        share = stats.sample_share(scene, job.budget)
        cores = [(t.index, t.core) for t in tiles]
        samples = stats.sample_cores(scene, job.bands_of(scene), job.dtype, cores, share, job.seed)
    return ChainResult([], dict(zip([t.index for t in tiles], samples, strict=True)), seconds)


class _TileReader:
    """Reads a scene's tiles: pixels, labels, summary row and statistics sample (the rows and
    samples go into `result`)."""

    def __init__(
        self,
        job: Job,
        scene: SceneInfo,
        src: DatasetReader,
        read_labels: WindowLabels,
        result: ChainResult,
    ) -> None:
        self.job, self.src, self.read_labels, self.result = job, src, read_labels, result
        self.bands = job.bands_of(scene)
        self.fill, self.collar = fill_value(job.dtype, scene.nodata), scene.collar
        self.share = stats.sample_share(scene, job.budget)

    def read(self, tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A tile's images, labels and valid mask, as the store holds them."""
        job, seconds, core = self.job, self.result.seconds, _core(tile)
        with seconds("read"):
            pixels = read_window(
                self.src, tile.window, self.bands, job.dtype, self.fill, self.collar
            )
        data, valid = pixels.data, pixels.valid
        with seconds("labels"):
            label, unmapped = self.read_labels(tile.window)
            label[~valid] = IGNORE
            infinite = int(np.count_nonzero(pixels.infinite[core]))
            row = _summary(tile.index, label, valid, unmapped, infinite, job.n_classes)
            self.result.rows.append(row)
        with seconds("statistics"):
            sample = stats.sample_core(data, valid, core, self.share, job.seed, tile.index)
            self.result.samples[tile.index] = sample
        return data, label, valid


class _Writers:
    """Runs writes on WRITERS threads, at most `ahead` of them waiting, each block's marker once
    its tiles are written; on leaving, waits for them (raising the first error), or, when the
    caller failed, drops those not started."""

    def __init__(self, ahead: int) -> None:
        self.ahead, self.seconds = ahead, StageSeconds()
        self.pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="tile-writer")
        self.pending: deque[Future[None]] = deque()
        self.block: list[Future[None]] = []  # the tile writes of the block under way

    def __enter__(self) -> _Writers:
        return self

    def tile(self, write: Callable[..., None], *args: Any) -> None:
        """Write a tile of the block under way."""
        self.block.append(self._submit(self._timed, write, *args))

    def marker(self, write: Callable[..., None], *args: Any) -> None:
        """Write the marker of the block under way, once its tiles are written."""
        tiles, self.block = self.block, []
        self._submit(self._after, tiles, write, *args)

    def _submit(self, work: Callable[..., None], *args: Any) -> Future[None]:
        while len(self.pending) > self.ahead:
            self.pending.popleft().result()
        future = self.pool.submit(work, *args)
        self.pending.append(future)
        return future

    def _after(self, tiles: list[Future[None]], write: Callable[..., None], *args: Any) -> None:
        for tile in tiles:  # begun before this (the pool starts work in order): no deadlock
            tile.result()
        self._timed(write, *args)

    def _timed(self, write: Callable[..., None], *args: Any) -> None:
        with self.seconds("write"):
            write(*args)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=kind is not None)
        while kind is None and self.pending:
            self.pending.popleft().result()


def _write(arrays: tuple[ChunkFiles, ...], index: int, tile: tuple[np.ndarray, ...]) -> None:
    """Write a tile's images, labels and valid mask into the store's arrays."""
    for writer, values in zip(arrays, tile, strict=True):
        writer.write(index, values)


def _core(tile: Tile) -> tuple[slice, slice]:
    """The rows and columns of a tile's core (the part of the scene that is its own) in the
    tile."""
    r = int(tile.core.row_off - tile.window.row_off)
    c = int(tile.core.col_off - tile.window.col_off)
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
