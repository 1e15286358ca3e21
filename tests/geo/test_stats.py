"""Band statistics from a bounded, seeded sample of windows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from geo.io.grid import GridSpec
from geo.io.raster import WINDOWS_PER_SCENE, SceneInfo, sample_windows, scene_info
from geo.tiling.stats import sample_scene, scene_budget, summarize
from tests.support.paths import NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS
from tests.support.stores import tile

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
    assert len({(w.col_off, w.row_off) for w in a}) == WINDOWS_PER_SCENE  # no pixel twice
    for w in a:  # cells of the 256 px grid (the blocks of tiled GeoTIFFs), inside the scene
        assert w.col_off % 256 == 0 and w.row_off % 256 == 0
        assert w.col_off + w.width <= 10980 and w.row_off + w.height <= 10980
        assert w.width == min(256, 10980 - w.col_off) and w.height == min(256, 10980 - w.row_off)


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


@pytest.mark.parametrize(("width", "height", "size", "overlap"), [(512, 512, 128, 32),
                         (300, 1000, 128, 48), (100, 90, 128, 16)])  # fmt: skip
def test_tile_cores_cover_each_pixel_once(width: int, height: int, size: int, overlap: int) -> None:
    """Per-pixel counts over tile cores (the infinite-pixel warning) count no pixel twice."""
    grid = GridSpec(width, height, size, overlap)
    covered = np.zeros((max(height, size), max(width, size)), dtype=int)
    for row, col, window in grid.windows():
        core = grid.core(row, col)
        assert window.intersection(core) == core
        covered[core.toslices()] += 1
    assert np.all(covered == 1)


def float_scene(path: Path, absurd: dict[tuple[int, int], float]) -> Path:
    """The Nebraska scene as float32 (nodata -9999), with `absurd` values at (row, col) in
    every band."""
    with rasterio.open(NEBRASKA) as src:
        profile, pixels = {**src.profile, "dtype": "float32"}, src.read().astype("float32")
    for (row, col), value in absurd.items():
        pixels[:, row, col] = value
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def test_inf_and_absurd_pixels_leave_the_statistics_finite_and_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three inf pixels (in tile overlaps, read by up to four tiles each) and nine at 3e38:
    the statistics stay within 0.1 % of the clean scene's, zarr.json holds no NaN or Infinity,
    and one warning counts the 3 non-finite pixels."""
    infinite = {(100, 100): np.inf, (300, 420): -np.inf, (500, 30): np.inf}
    huge = {(40 * k + 7, 50 * k + 3): 3e38 for k in range(9)}
    clean = float_scene(tmp_path / "clean.tif", {})
    dirty = float_scene(tmp_path / "dirty.tif", {**infinite, **huge})
    options = {"tile_size": 128, "overlap": 32, "dask_address": "sync"}
    reference = tile([clean], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "clean.zarr", **options)
    with caplog.at_level(logging.WARNING, logger="geo"):
        store = tile([dirty], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "dirty.zarr", **options)
    expected = zarr.open_group(str(reference), mode="r").attrs["normalization"]
    got = zarr.open_group(str(store), mode="r").attrs["normalization"]
    for name in ("mean", "std", "p2", "p98"):
        assert np.all(np.isfinite(got[name])), name
        assert got[name] == pytest.approx(expected[name], rel=1e-3), name
    text = (store / "zarr.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"zarr.json holds {c}"))
    warnings = [r.getMessage() for r in caplog.records if "infinite" in r.getMessage()]
    assert warnings == [f"{dirty}: 3 pixels hold infinite values; they are treated as nodata"]
