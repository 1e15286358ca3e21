"""Spatial block split: whole blocks of labelled tiles to validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import shapely
from affine import Affine

from geo.contracts.tile_store import TRAIN, VAL
from geo.io.grid import GridSpec
from geo.io.raster import window_polygon
from geo.tiling.split import Footprint, assign_splits, split_labelled


def grid(
    width: int, size: int, overlap: int, group: str = "EPSG:32633", x0: float = 0.0
) -> list[Footprint]:
    """Footprints of a square scene's tiles, 10 m pixels."""
    transform = Affine(10, 0, x0, 0, -10, 5_000_000)
    return [
        Footprint(group, r, c, window_polygon(transform, w), 10.0 * (size - overlap), True)
        for r, c, w in GridSpec(width, width, size, overlap).windows()
    ]


def test_sentinel2_sized_grid_splits_by_blocks() -> None:
    tiles = grid(10980, 1024, 128)  # 13 x 13 tiles
    split, side = assign_splits(tiles, 0.2, seed=0)
    assert side == 4 and len(tiles) == 169 and set(split) == {TRAIN, VAL}
    assert 0.1 < (split == VAL).mean() < 0.35
    again, _ = assign_splits(tiles, 0.2, seed=0)
    other, _ = assign_splits(tiles, 0.2, seed=1)
    assert np.array_equal(split, again) and not np.array_equal(split, other)


def test_validation_is_drawn_among_labelled_tiles_only() -> None:
    tiles = grid(8192, 512, 0)  # 16 x 16 tiles, labels on the first 4 columns only
    labelled = np.array([t.grid_col < 4 for t in tiles])
    split = split_labelled(tiles, labelled[:, None], 0.25, seed=0)
    assert (split[~labelled] == TRAIN).all()
    assert 0.15 < (split[labelled] == VAL).mean() < 0.35


def test_scenes_of_the_same_place_share_their_blocks() -> None:
    """Two dates of one area: a place is validation in both or in neither."""
    a, b = grid(4096, 512, 64), grid(4096, 512, 64)
    split, _ = assign_splits(a + b, 0.2, seed=0)
    assert np.array_equal(split[: len(a)], split[len(a) :])


def test_scenes_without_crs_split_scene_by_scene() -> None:
    box = shapely.box(0, 0, 128, 128)
    tiles = [Footprint(f"scene:{i}", 0, 0, box, 128.0, False) for i in range(40)]
    split, _ = assign_splits(tiles, 0.2, seed=0)
    assert (split == VAL).sum() == 8


def test_zero_fraction_and_a_single_tile_keep_everything_for_training(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert set(assign_splits(grid(4096, 512, 64), 0.0, seed=0)[0]) == {TRAIN}
    with caplog.at_level(logging.WARNING, logger="geo"):
        split, _ = assign_splits(grid(512, 512, 64), 0.2, seed=0)
    assert split.tolist() == [TRAIN] and "the one tile is training" in caplog.text


def test_every_class_is_in_both_splits_where_the_blocks_allow() -> None:
    """A class found in one corner of the labels (two blocks of a 4 x 4 block grid) still has
    pixels in validation and in training, for every seed; a class of one block stays in
    training; the validation share is unchanged."""
    tiles = grid(8192, 512, 0)  # 16 x 16 tiles: 4 x 4 blocks of 4 x 4 tiles
    classes = np.zeros((len(tiles), 3), dtype=bool)
    classes[:, 0] = True  # background everywhere
    corner = np.array([t.grid_row < 4 and t.grid_col < 8 for t in tiles])  # blocks (0,0), (0,1)
    classes[corner, 1] = True
    alone = np.array([t.grid_row >= 12 and t.grid_col >= 12 for t in tiles])  # one block
    classes[alone, 2] = True
    plain = [split_labelled(tiles, classes[:, :1], 0.2, seed) for seed in range(20)]
    assert any(not (s[corner] == VAL).any() for s in plain)  # a class-blind split can miss it
    for seed in range(20):
        split = split_labelled(tiles, classes, 0.2, seed)
        assert (split[corner] == VAL).any() and (split[corner] == TRAIN).any()
        assert (split[alone] == TRAIN).any()
        assert 0.1 < (split == VAL).mean() < 0.3
    assert np.array_equal(
        split_labelled(tiles, classes, 0.2, 3), split_labelled(tiles, classes, 0.2, 3)
    )
