"""Train/validation split by spatial blocks of the tiles that hold labels.

Tiles are grouped into square blocks of `b` x `b` grid steps: in map coordinates for georeferenced
scenes (so scenes of the same place on different dates share their blocks), per scene for scenes
without a CRS (AgNet-like scenes of one tile each are then split scene by scene). Whole blocks go to
validation, in a seeded random order, until the validation share is closest to `val_fraction`;
of the first `ORDERS` such orders, the first that gives every class pixels in both splits (where
the blocks allow it; a class of one block in training) is kept, so that a class found in one
corner of the labels is still measured on validation.
Tiles overlap by `overlap` px, so a training tile may share pixels with a validation tile:
training leaves those pixels' labels out (`geo.finetune.dataset`), instead of losing the tile.
Tiling splits only the tiles that hold labelled pixels (`split_labelled`); the others teach
nothing and stay in the training split, where training leaves them out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from geo.contracts.tile_store import TRAIN, VAL

BLOCK_SIDES = (4, 2, 1)
MIN_BLOCKS = 4
ORDERS = 64  # random block orders tried for a split with every class in both parts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Footprint:
    """Where a tile lies: tiles of one group share coordinates and may overlap each other."""

    group: str  # the CRS (WKT), or the scene for scenes without a CRS
    grid_row: int
    grid_col: int
    polygon: shapely.Polygon  # the tile's outline in group coordinates (any rotation)
    step: float  # grid step (tile stride) in group coordinates
    georeferenced: bool

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in group coordinates."""
        left, bottom, right, top = self.polygon.bounds
        return left, bottom, right, top


def block_keys(tiles: list[Footprint], side: int) -> list[tuple]:
    """The block each tile belongs to, for blocks of `side` x `side` grid steps."""
    steps: dict[str, float] = {}
    for t in tiles:
        steps[t.group] = max(steps.get(t.group, 0.0), t.step)
    keys = []
    for t in tiles:
        if t.georeferenced:
            size = side * steps[t.group]
            cx, cy = (t.bounds[0] + t.bounds[2]) / 2, (t.bounds[1] + t.bounds[3]) / 2
            keys.append((t.group, math.floor(cx / size), math.floor(cy / size)))
        else:
            keys.append((t.group, t.grid_row // side, t.grid_col // side))
    return keys


def assign_splits(
    tiles: list[Footprint],
    val_fraction: float,
    seed: int,
    advice: str = "",
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Split code per tile (0 train, 1 val) and the block side used, in grid steps.

    `classes` (tiles x classes, True where a tile holds pixels of the class) asks for every class
    in both splits where the blocks allow it. Deterministic for a seed. When no choice of blocks
    leaves a training tile (tiny data), or there is a single block, every tile is training and a
    warning says so, with `advice` after it.
    """
    side, keys = BLOCK_SIDES[-1], []
    for side in BLOCK_SIDES:
        keys = block_keys(tiles, side)
        if len(set(keys)) >= MIN_BLOCKS:
            break
    members: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    blocks = [members[k] for k in sorted(members)]
    if val_fraction <= 0 or not tiles:
        return np.full(len(tiles), TRAIN, dtype=np.uint8), side
    if len(blocks) > 1:
        presence = np.ones((len(tiles), 1), dtype=bool) if classes is None else classes
        split = _pick(blocks, presence, val_fraction, np.random.default_rng(seed))
        if (split == TRAIN).any():
            return split, side
    log.warning(
        "too few tiles for a spatial validation split: %s training%s",
        "the one tile is" if len(tiles) == 1 else f"all {len(tiles)} tiles are",
        advice,
    )
    return np.full(len(tiles), TRAIN, dtype=np.uint8), side


def split_labelled(
    tiles: list[Footprint], classes: np.ndarray, val_fraction: float, seed: int, advice: str = ""
) -> np.ndarray:
    """Split codes for all tiles, drawing the validation blocks among the labelled ones only
    (`classes`: tiles x classes, True where a tile holds labelled pixels of the class)."""
    split = np.full(len(tiles), TRAIN, dtype=np.uint8)
    chosen = np.flatnonzero(classes.any(axis=1))
    split[chosen], _ = assign_splits(
        [tiles[i] for i in chosen], val_fraction, seed, advice, classes[chosen]
    )
    return split


def _pick(
    blocks: list[list[int]], classes: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """The split of the first of `ORDERS` block orders that gives each class pixels in both
    splits, or in training for a class of one block; else of the order that does so for the
    most classes (the first of them)."""
    blocks_with = np.array([classes[b].any(axis=0) for b in blocks]).sum(axis=0)
    best, best_score = None, -1
    for _ in range(ORDERS):
        split = _greedy(blocks, len(classes), val_fraction, rng.permutation(len(blocks)))
        val = split == VAL
        in_train, in_val = classes[~val].any(axis=0), classes[val].any(axis=0)
        met = np.where(blocks_with >= 2, in_train & in_val, in_train | (blocks_with == 0))
        score = int(met.sum())
        if score > best_score:
            best, best_score = split, score
        if score == len(met):
            break
    assert best is not None
    return best


def _greedy(
    blocks: list[list[int]], n_tiles: int, val_fraction: float, order: np.ndarray
) -> np.ndarray:
    """Blocks in `order` into validation while that brings its share closer to the target."""
    split = np.full(n_tiles, TRAIN, dtype=np.uint8)
    target, n_val = val_fraction * n_tiles, 0
    for b in order:
        size = len(blocks[b])
        if n_val + size < n_tiles and abs(n_val + size - target) < abs(n_val - target):
            split[blocks[b]] = VAL
            n_val += size
    if n_val == 0:  # every block overshoots: take the smallest
        smallest = min(order, key=lambda b: len(blocks[b]))
        split[blocks[smallest]] = VAL
    return split
