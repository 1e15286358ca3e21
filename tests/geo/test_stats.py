"""Band statistics from a bounded, seeded sample of windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from geo.io.raster import WINDOWS_PER_SCENE, SceneInfo, sample_windows, scene_info
from geo.tiling.stats import sample_scene, scene_budget, summarize

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
RGB = DATA / "landsat7_rgb_byte" / "RGB.byte.tif"


def big_scene(size: int) -> SceneInfo:
    return SceneInfo("unused.tif", size, size, 13, "uint16", None, (10, 0, 0, 0, -10, 0), None, ())


def test_large_scenes_sample_a_fixed_number_of_seeded_windows() -> None:
    scene = big_scene(10980)
    a = sample_windows(scene, np.random.default_rng([0, 0]))
    b = sample_windows(scene, np.random.default_rng([0, 0]))
    c = sample_windows(scene, np.random.default_rng([1, 0]))
    assert len(a) == WINDOWS_PER_SCENE and a == b and a != c
    assert all(0 <= w.col_off <= 10980 - 256 and 0 <= w.row_off <= 10980 - 256 for w in a)


def test_small_scenes_are_read_whole_without_double_counting() -> None:
    windows = sample_windows(scene_info(str(RGB)), np.random.default_rng(0))
    covered = np.zeros((718, 791), dtype=int)
    for w in windows:
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert np.all(covered == 1)


def test_sample_skips_nodata_and_respects_the_budget() -> None:
    scene = scene_info(str(RGB))
    with rasterio.open(RGB) as src:
        data = src.read()
    valid = ~(data == 0).any(axis=0)
    everything = sample_scene(scene, [1, 2, 3], budget=10**7, seed=0, index=0)
    assert everything.shape == (valid.sum(), 3)
    stats = summarize([everything])
    pixels = data[:, valid].astype(np.float64)
    low, high = np.percentile(pixels, [0.1, 99.9], axis=1)
    clipped = np.clip(pixels, low[:, None], high[:, None])
    assert np.allclose(stats.mean, clipped.mean(axis=1))
    small = sample_scene(scene, [1, 2, 3], budget=1200, seed=0, index=0)
    assert len(small) <= 1200 and np.array_equal(small, sample_scene(scene, [1, 2, 3], 1200, 0, 0))
    assert scene_budget(1) > scene_budget(1000) >= 4096
    assert summarize([np.empty((0, 3))]) is None
