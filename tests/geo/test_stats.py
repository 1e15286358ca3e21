"""Band statistics from a bounded, seeded sample of the tiles' pixels; the sample windows that
look for data before tiling."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.windows import Window

from geo.io.grid import GridSpec
from geo.io.raster import WINDOWS_PER_SCENE, SceneInfo, sample_windows, scene_info
from geo.tiling.stats import sample_core, sample_cores, scene_budget, summarize
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


def cores(scene: SceneInfo, size: int, overlap: int) -> list[tuple[int, Window]]:
    """(tile index, core window) of every tile of a scene's grid."""
    grid = GridSpec(scene.width, scene.height, size, overlap)
    return [(i, grid.core(r, c)) for i, (r, c, _) in enumerate(grid.windows())]


def test_tile_samples_skip_nodata_and_take_every_pixel_within_the_budget() -> None:
    scene = scene_info(str(RGB))
    with rasterio.open(RGB) as src:
        data = src.read()
    valid = ~(data == 0).any(axis=0)
    tiles = cores(scene, 256, 32)
    everything = sample_cores(scene, [1, 2, 3], "uint8", tiles, 1.0, seed=0)
    assert sum(s.shape[1] for s in everything) == valid.sum()
    stats = summarize(everything)
    pixels = data[:, valid].astype(np.float64)
    low, p2, high = np.percentile(pixels, [0.1, 2, 99.9], axis=1)
    clipped = np.clip(pixels, low[:, None], high[:, None])
    assert np.allclose(stats.mean, clipped.mean(axis=1)) and np.allclose(stats.p2, p2)
    share = 0.05
    small = sample_cores(scene, [1, 2, 3], "uint8", tiles, share, seed=0)
    again = sample_cores(scene, [1, 2, 3], "uint8", tiles, share, seed=0)
    other = sample_cores(scene, [1, 2, 3], "uint8", tiles, share, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(small, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(small, other, strict=True))
    assert sum(s.shape[1] for s in small) <= share * scene.width * scene.height * 1.01
    assert all(s.min() > 0 for s in small if s.size)  # nodata never sampled
    assert scene_budget(1) > scene_budget(1000) >= 4096
    assert summarize([np.empty((3, 0))]) is None


def test_a_sample_spreads_over_the_whole_scene_and_speaks_for_it() -> None:
    """A 10 % sample of the Nebraska scene, drawn tile core by tile core, comes from every part
    of the scene and gives statistics within 1 % of those of all its pixels."""
    scene = scene_info(str(NEBRASKA))
    with rasterio.open(NEBRASKA) as src:
        data = src.read()
    tiles = cores(scene, 64, 8)
    samples = sample_cores(scene, [1, 2, 3], "int16", tiles, 0.1, seed=0)
    assert all(s.shape[1] > 0 for s in samples)  # every core of a scene without nodata
    stats = summarize(samples)
    exact = summarize([data.reshape(3, -1)])
    assert stats is not None and exact is not None
    for name in ("mean", "std", "p2", "p98"):
        assert getattr(stats, name) == pytest.approx(getattr(exact, name), rel=0.01), name


def test_positions_are_drawn_from_the_whole_core_and_seeded_by_tile() -> None:
    data = np.arange(3 * 200 * 300, dtype=np.int32).reshape(3, 200, 300)
    valid = np.ones((200, 300), dtype=bool)
    valid[:, :10] = False
    whole = (slice(0, 200), slice(0, 300))
    a = sample_core(data, valid, whole, 0.1, seed=0, tile=4)
    assert np.array_equal(a, sample_core(data, valid, whole, 0.1, seed=0, tile=4))
    assert not np.array_equal(a[0], sample_core(data, valid, whole, 0.1, seed=0, tile=5)[0])
    rows, cols = np.divmod(a[0], 300)
    assert 5000 < a.shape[1] <= 6000 and np.all(np.diff(a[0]) > 0)  # distinct, in order
    assert cols.min() >= 10 and rows.min() < 20 and rows.max() > 180 and cols.max() > 280
    assert np.array_equal(a[1] - a[0], np.full(a.shape[1], 200 * 300))


def test_a_core_inside_its_tile_draws_what_the_core_read_alone_draws() -> None:
    """Tiling samples each core inside its tile, a resumed run the core read alone."""
    tile = np.random.default_rng(0).integers(0, 4000, (3, 256, 320)).astype(np.int16)
    valid = np.random.default_rng(1).random((256, 320)) > 0.2
    core = (slice(16, 240), slice(32, 288))
    inside = sample_core(tile, valid, core, 0.05, seed=3, tile=7)
    alone = np.ascontiguousarray(tile[:, core[0], core[1]]), valid[core].copy()
    assert inside.shape[1] > 2000
    assert np.array_equal(inside, sample_core(*alone, (slice(0, 224), slice(0, 256)), 0.05, 3, 7))


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


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "float32"])
def test_statistics_are_numpys_percentiles_and_clipped_moments_in_every_dtype(dtype: str) -> None:
    """Whether a dtype's values are counted (one- and two-byte integers) or sorted, the band
    statistics are np.percentile's 2nd and 98th and the mean and std of the values clipped to
    the 0.1 and 99.9 percentiles."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if dtype != "float32" else np.finfo(dtype)
    values = np.clip(rng.normal(100, 40, size=(2, 50_001)), max(info.min, -1e4), info.max)
    values[:, :7] = info.max  # a few absurd values, clipped away for the moments
    samples = [values[:, :20_000].astype(dtype), values[:, 20_000:].astype(dtype)]
    got = summarize(samples)
    pooled = np.concatenate(samples, axis=1).astype(np.float64)
    assert got is not None
    for band, row in enumerate(pooled):
        low, p2, p98, high = np.percentile(row, [0.1, 2, 98, 99.9])
        clipped = np.clip(row, low, high)
        assert got.p2[band] == pytest.approx(p2, rel=1e-12)
        assert got.p98[band] == pytest.approx(p98, rel=1e-12)
        assert got.mean[band] == pytest.approx(clipped.mean(), rel=1e-9)
        assert got.std[band] == pytest.approx(clipped.std(), rel=1e-9)
