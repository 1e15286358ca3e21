"""Per-band statistics over all scenes from a bounded, seeded sample of the pixels tiling reads.

Every tile samples the same share of the positions of its core (the part of the scene that is
its own: the cores cover each scene once), so the sample spreads evenly over the whole scene and
no pixel is drawn twice. A tile's sample depends only on its pixels, the seed and its index:
the blocks that tile it (whatever their layout) and a resumed run (`sample_cores`) draw the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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
    data: np.ndarray, valid: np.ndarray, share: float, seed: int, tile: int
) -> np.ndarray:
    """The valid pixels at about a `share` of the positions of a tile's core, drawn at random
    (seeded by the tile; a position drawn twice is taken once), (C, n) in the order of their
    positions: `data` (C, H, W) and `valid` (H, W) are the core's."""
    height, width = valid.shape
    count = round(share * height * width)
    if count >= height * width:
        return data[:, valid]
    drawn = np.sort(np.random.default_rng([seed, tile]).integers(0, height * width, count))
    distinct = drawn[np.concatenate(([True], drawn[1:] != drawn[:-1]))]  # np.unique, faster
    rows, cols = np.divmod(distinct, width)
    keep = valid[rows, cols]
    return data[:, rows[keep], cols[keep]]


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
            sample_core(*read_window(src, core, bands, dtype, 0)[:2], share, seed, tile)
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
    """Mean and std of one band's values clipped to CLIP_PERCENTILES, its 2 and 98 percentiles.
    Sorted in their own dtype (faster than in float64), and converted to float64 band by band
    (a few fresh float64 copies of all bands cost more than the arithmetic)."""
    ordered = np.sort(values, kind=_sort_kind(values.dtype))
    low, p2, p98, high = _percentiles(ordered, [CLIP_PERCENTILES[0], 2, 98, CLIP_PERCENTILES[1]])
    clipped = np.clip(ordered, low, high, dtype=np.float64)
    return float(clipped.mean()), float(clipped.std()), float(p2), float(p98)


def _sort_kind(dtype: np.dtype) -> Literal["stable"] | None:
    """NumPy's fastest sort of a dtype: a radix sort (its stable sort) for integers of one or
    two bytes, about 7x its quicksort on a million int16 values; quicksort for the others,
    which it sorts with SIMD (where its stable sort is 10x slower)."""
    return "stable" if dtype.kind in "iub" and dtype.itemsize <= 2 else None


def _percentiles(ordered: np.ndarray, percents: Sequence[float]) -> np.ndarray:
    """`np.percentile(ordered, percents)` (linear interpolation) of sorted values: read off at
    their ranks, where `np.percentile` selects them (slower than the sort)."""
    rank = np.asarray(percents) / 100 * (len(ordered) - 1)
    below = np.floor(rank).astype(np.intp)
    above = np.minimum(below + 1, len(ordered) - 1)
    low, high = ordered[below].astype(np.float64), ordered[above].astype(np.float64)
    return low + (high - low) * (rank - below)
