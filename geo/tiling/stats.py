"""Per-band statistics over all scenes from a bounded, seeded sample of the pixels tiling reads.

Every tile samples the same share of the positions of its core (the part of the scene that is
its own: the cores cover each scene once), so the sample spreads evenly over the whole scene and
no pixel is drawn twice. A tile's sample depends only on its pixels, the seed and its index:
the blocks that tile it (whatever their layout) and a resumed run (`sample_cores`) draw the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rasterio.windows import Window

from geo.contracts.normalization import Normalization
from geo.io.raster import SceneInfo, open_raster, read_window

TOTAL_PIXELS = 2**20  # pixels kept over all scenes; each scene keeps at least MIN_PIXELS
MIN_PIXELS = 4096
CLIP_PERCENTILES = (0.1, 99.9)  # band values beyond these are clipped for mean and std


def scene_budget(n_scenes: int) -> int:
    """Pixels to sample per scene so that all scenes together stay near TOTAL_PIXELS."""
    return max(MIN_PIXELS, TOTAL_PIXELS // max(1, n_scenes))


def sample_share(scene: SceneInfo, budget: int) -> float:
    """The share of a scene's pixel positions that its tiles sample (1: every pixel)."""
    return min(1.0, budget / (scene.width * scene.height))


def sample_core(
    data: np.ndarray,
    valid: np.ndarray,
    core: tuple[slice, slice],
    share: float,
    seed: int,
    tile: int,
) -> np.ndarray:
    """The valid pixels at about a `share` of the positions of a tile's core, drawn at random
    (seeded by the tile; a position drawn twice is taken once), (C, n) in the order of their
    positions: `data` (C, H, W) and `valid` (H, W) are the tile's, `core` the rows and columns
    of its core in it. The pixels are taken by their flat positions in the tile (8x faster than
    indexing the core's rows and columns)."""
    rows, cols = core
    top, left = rows.start or 0, cols.start or 0
    height, width = rows.stop - top, cols.stop - left
    count = round(share * height * width)
    if count >= height * width:
        return data[:, rows, cols][:, valid[rows, cols]]
    drawn = np.sort(np.random.default_rng([seed, tile]).integers(0, height * width, count))
    distinct = drawn[np.concatenate(([True], drawn[1:] != drawn[:-1]))]  # np.unique, faster
    r, c = np.divmod(distinct, width)
    at = (r + top) * valid.shape[1] + (c + left)
    at = at[valid.ravel()[at]]
    return np.take(data.reshape(len(data), -1), at, axis=1)


def sample_cores(
    scene: SceneInfo,
    bands: Sequence[int],
    dtype: str,
    cores: Sequence[tuple[int, Window]],
    share: float,
    seed: int,
) -> list[np.ndarray]:
    """`sample_core` of (tile index, core window) pairs, each core read alone: the samples of
    tiles written by an earlier run (the same as when their blocks read them)."""
    with open_raster(scene.path) as src:
        return [
            sample_core(
                *read_window(src, core, bands, dtype, 0, scene.collar)[:2],
                (slice(0, int(core.height)), slice(0, int(core.width))),
                share,
                seed,
                tile,
            )
            for tile, core in cores
        ]


def summarize(samples: Sequence[np.ndarray]) -> Normalization | None:
    """Band statistics of the pooled samples, each (C, n) (None when there is no pixel).

    Robust to a few absurd values: each band is clipped to its CLIP_PERCENTILES range before
    the mean and standard deviation are taken (the samples hold finite values only).
    """
    pooled = np.concatenate(samples, axis=1) if samples else np.empty((0, 0))
    if pooled.size == 0:
        return None
    mean, std, p2, p98 = zip(*(_band_statistics(band) for band in pooled), strict=True)
    return Normalization(mean=mean, std=std, p2=p2, p98=p98)


def _band_statistics(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and std of one band's values clipped to CLIP_PERCENTILES, its 2 and 98 percentiles:
    integers of one or two bytes are counted (a histogram of at most 65,536 values, about 4x
    faster than sorting them), other values sorted in their own dtype."""
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 2:
        distinct, counts = _counted(values)
        ends = np.cumsum(counts)
    else:  # every value, in order
        distinct, counts, ends = np.sort(values), None, None
    ranks = np.asarray([CLIP_PERCENTILES[0], 2, 98, CLIP_PERCENTILES[1]]) / 100 * (len(values) - 1)
    low, p2, p98, high = _percentiles(distinct, ends, ranks)
    clipped = np.clip(distinct, low, high, dtype=np.float64)
    if counts is None:
        return float(clipped.mean()), float(clipped.std()), float(p2), float(p98)
    mean = float(np.dot(counts, clipped)) / len(values)
    std = math.sqrt(float(np.dot(counts, (clipped - mean) ** 2)) / len(values))
    return mean, std, float(p2), float(p98)


def _counted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of small integers, in order, and how often each occurs."""
    offset = int(np.iinfo(values.dtype).min)
    counts = np.bincount(values.astype(np.int32) - offset)
    present = np.flatnonzero(counts)
    return present + offset, counts[present]


def _percentiles(distinct: np.ndarray, ends: np.ndarray | None, ranks: np.ndarray) -> np.ndarray:
    """`np.percentile` (linear interpolation) at fractional `ranks` of the values in order,
    read off at the ranks around each one (where `np.percentile` selects them, slower)."""
    below = np.floor(ranks).astype(np.intp)
    above = np.minimum(below + 1, (len(distinct) if ends is None else int(ends[-1])) - 1)
    low, high = (_at(distinct, ends, r).astype(np.float64) for r in (below, above))
    return low + (high - low) * (ranks - below)


def _at(distinct: np.ndarray, ends: np.ndarray | None, ranks: np.ndarray) -> np.ndarray:
    """The values at integer ranks of the values in order: `distinct` values in order, each
    repeated up to its cumulative count in `ends` (None: each once)."""
    return distinct[ranks] if ends is None else distinct[np.searchsorted(ends, ranks, "right")]
