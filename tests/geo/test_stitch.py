"""Blending: the taper, full coverage, streaming equals whole-scene blending, and no seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geo.io.grid import default_overlap
from geo.predict import prepare_scene
from geo.predict.rows import predict_rows
from geo.predict.scene import window_grid
from geo.predict.stitch import RowBand, StitchPlan, taper
from tests.support.cli import write_like
from tests.support.cog import core_edges
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import NEBRASKA


@pytest.mark.parametrize(("size", "margin", "ramp"), [(64, 4, 8), (128, 8, 16), (1024, 32, 64)])
def test_taper_is_zero_only_in_the_margin(size: int, margin: int, ramp: int) -> None:
    w = taper(size, margin, ramp)
    assert (w[:margin] == 0).all() and (w[size - margin :] == 0).all()
    core = w[margin : size - margin]
    assert core.min() > 0 and core.max() == 1
    np.testing.assert_allclose(w, w[::-1])
    assert (np.diff(core[: ramp + 1]) > 0).all()  # rises over the ramp


def test_taper_ramps_of_neighbours_sum_to_one() -> None:
    size, overlap = 128, 32
    plan = StitchPlan(1000, 1000, size, overlap)
    w = taper(size, plan.margin, plan.ramp)
    stride = size - overlap
    total = np.zeros(size + stride)
    total[:size] += w
    total[stride:] += w
    kept = total[size - overlap + plan.margin : size - plan.margin]  # where the cores overlap
    np.testing.assert_allclose(kept, 1.0, atol=1e-12)


def blend_whole_scene(plan: StitchPlan, tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Reference: pad, accumulate every tile at once over the whole scene, normalise, crop."""
    m, size = plan.margin, plan.tile_size
    k = next(iter(tiles.values())).shape[0]
    height, width = plan.grid.height, plan.grid.width
    sums = np.zeros((k, max(height, size), max(width, size)))
    weight = np.zeros(sums.shape[1:])
    w = plan.weights().astype(np.float64)
    for (row, col), probs in tiles.items():
        sums[:, row : row + size, col : col + size] += probs * w
        weight[row : row + size, col : col + size] += w
    return (sums / np.where(weight > 0, weight, np.nan))[:, m : m + plan.height, m : m + plan.width]


def stream(plan: StitchPlan, tiles: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Blend with RowBand, grid row by grid row, releasing final rows as predict_rows does."""
    k = next(iter(tiles.values())).shape[0]
    band = RowBand(plan, k)
    rows, out = plan.grid.rows, []
    valid = np.ones((plan.tile_size, plan.tile_size), dtype=bool)
    for i, row in enumerate(rows):
        for col in plan.grid.cols:
            band.add(tiles[row, col], valid, row, col)
        top, probs, covered = band.release(rows[i + 1] if i + 1 < len(rows) else plan.height)
        assert top == sum(p.shape[1] for p in out) and covered.all()
        out.append(probs)
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize(
    ("width", "height", "size", "overlap", "blend"),
    [(300, 200, 64, 16, True), (300, 200, 64, 16, False), (129, 97, 64, 8, True),
     (50, 40, 64, 16, True), (64, 300, 64, 30, True), (1000, 70, 128, 0, False)],
)  # fmt: skip
def test_streaming_equals_whole_scene_blend_and_covers_every_pixel(
    width: int, height: int, size: int, overlap: int, blend: bool
) -> None:
    plan = StitchPlan(width, height, size, overlap, blend)
    rng = np.random.default_rng(0)
    tiles = {}
    for _, _, window in plan.grid.windows():
        logits = rng.normal(size=(3, size, size))
        tiles[window.row_off, window.col_off] = np.exp(logits) / np.exp(logits).sum(0)
    expected = blend_whole_scene(plan, tiles)
    assert not np.isnan(expected).any()  # every pixel has a positive weight
    got = stream(plan, {k: v.astype(np.float32) for k, v in tiles.items()})
    assert got.shape == (3, height, width)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-5)


def test_band_state_restores_exactly() -> None:
    plan = StitchPlan(200, 300, 64, 16)
    rng = np.random.default_rng(1)
    valid = np.ones((64, 64), dtype=bool)
    band = RowBand(plan, 2)
    for col in plan.grid.cols:
        band.add(rng.random((2, 64, 64), dtype=np.float32), valid, 0, col)
    band.release(plan.grid.rows[1])
    copy = RowBand(plan, 2)
    copy.restore({k: v.copy() for k, v in band.state().items()})
    for name in ("sums", "weight", "valid"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(band, name))
    assert (copy.top, copy.filled) == (band.top, band.filled)


def test_plan_rejects_overlap_of_half_a_tile() -> None:
    with pytest.raises(ValueError, match="overlap"):
        StitchPlan(100, 100, 64, 32)


@pytest.mark.parametrize("overlap", [0, 12])
def test_prediction_windows_follow_the_training_grid(overlap: int) -> None:
    metadata = metadata_for(NEBRASKA, [1, 2, 3], tile_size=64, overlap=overlap)
    assert metadata.overlap == overlap  # 0 is a grid, not a missing value
    assert window_grid(metadata, None, None) == (64, overlap)
    assert window_grid(metadata, 96, None) == (96, default_overlap(96))


def seam_ratio(probs: np.ndarray, valid: np.ndarray, plan: StitchPlan, far_from: list) -> float:
    """Mean absolute probability jump across the plan's seam lines (where a tile's contribution
    starts or stops) over the mean jump between neighbours at least 12 px from any seam line."""
    seam_jumps, far_jumps = [], []
    for axis in (0, 1):
        jump = np.abs(np.diff(probs, axis=axis + 1)).mean(axis=0)  # index i: pixels i and i + 1
        n = valid.shape[axis]
        ok = np.take(valid, range(n - 1), axis=axis) & np.take(valid, range(1, n), axis=axis)
        seams = np.array(core_edges(plan, axis)) - 1
        lines = np.arange(jump.shape[axis])
        edges = np.array(sorted({e - 1 for p in far_from for e in core_edges(p, axis)}))
        far = lines[np.abs(lines[:, None] - edges[None]).min(axis=1) >= 12]
        for chosen, out in ((seams, seam_jumps), (far, far_jumps)):
            out.append(np.take(jump, chosen, axis=axis)[np.take(ok, chosen, axis=axis)].mean())
    return float(np.mean(seam_jumps) / np.mean(far_jumps))


def scene_probabilities(blend: bool) -> tuple[StitchPlan, np.ndarray, np.ndarray]:
    metadata = metadata_for(NEBRASKA, [1, 2, 3])
    scene = prepare_scene(str(NEBRASKA), metadata, tile_size=128, overlap=32, blend=blend)
    band = RowBand(scene.plan, 3)
    parts = list(predict_rows(scene, ToyModel(3), band, batch_size=8))
    probs = np.concatenate([p for _, _, p, _ in parts], axis=1)
    valid = np.concatenate([v for _, _, _, v in parts], axis=0)
    return scene.plan, probs, valid


def test_no_seams_on_a_real_scene_with_blending_and_seams_without() -> None:
    """Nebraska Landsat crop, a conv net with zero padding and per-tile context: blended seam
    lines jump no more than 1.2x neighbouring pixels elsewhere; a plain mean of tiles does."""
    blended, p_blend, v_blend = scene_probabilities(blend=True)
    naive, p_naive, v_naive = scene_probabilities(blend=False)
    assert v_blend.all() and v_naive.all()
    with_blend = seam_ratio(p_blend, v_blend, blended, [blended, naive])
    without = seam_ratio(p_naive, v_naive, naive, [blended, naive])
    print(f"seam jump / elsewhere: blended {with_blend:.3f}, plain mean {without:.3f}")
    assert with_blend <= 1.2
    assert without > 1.2


class CountingModel(ToyModel):
    """The toy model, counting the tiles it is given."""

    tiles = 0

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        self.tiles += len(images)
        return super().predict_proba(images)


def test_windows_of_no_data_are_not_run_through_the_model(tmp_path: Path) -> None:
    """The Nebraska scene with its western 300 columns no data (a collar, the outside of an
    area, clouds): windows holding no valid pixel are left out of the model's batches (a 40,000
    px scene of mostly no data took as long as one of data), and the output's no data is where
    the scene's is."""
    with rasterio.open(NEBRASKA) as src:
        pixels, nodata = src.read(), src.nodata if src.nodata is not None else -9999
    pixels[:, :, :300] = nodata
    scene_path = write_like(NEBRASKA, tmp_path / "west_empty.tif", pixels, nodata=nodata)
    metadata = metadata_for(NEBRASKA, [1, 2, 3])
    scene = prepare_scene(str(scene_path), metadata, tile_size=128, overlap=32)
    model = CountingModel(3)
    parts = list(predict_rows(scene, model, RowBand(scene.plan, 3), batch_size=4))
    valid = np.concatenate([v for _, _, _, v in parts], axis=0)
    assert (valid[:, :300] == 0).all() and valid[:, 300:].all()
    grid = scene.plan.grid
    windows = len(grid.rows) * len(grid.cols)
    # window columns are in the scene padded by the margin: a window at c holds scene columns
    # c - margin .. c - margin + 127, which reach the data when they reach column 300
    firsts = np.asarray(grid.cols) - scene.plan.margin
    with_data = len(grid.rows) * int((firsts + 128 > 300).sum())
    assert model.tiles == with_data < windows, (model.tiles, with_data, windows)
