"""Seamless blending of overlapping tile predictions, one band of rows at a time.

Tiles are laid on a grid over the scene reflect-padded by `margin` px on every side. Each tile
keeps only its core (the `margin` px at its edges are dropped), weighted by a separable raised-
cosine taper that rises over the overlap and never reaches zero, so every scene pixel is covered
by at least one core with a positive weight. `RowBand` holds the weighted sums for the rows that
the current grid row touches (K + 1 float32 channels, tile-size rows, scene-width columns); rows
above the next grid row are final and leave the band, so memory never depends on scene height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geo.io.grid import GridSpec


def taper(size: int, margin: int, ramp: int) -> np.ndarray:
    """1-D tile weights: 0 in the dropped `margin` at each end, a raised-cosine rise over `ramp`
    px starting above 0, then 1; every kept pixel has a weight in (0, 1]."""
    core = size - 2 * margin
    if core <= 0:
        raise ValueError(f"margin {margin} leaves nothing of a {size} px tile")
    ramp = min(ramp, core // 2)
    dist = np.minimum(np.arange(core), np.arange(core)[::-1])  # to the nearer core edge
    rising = 0.5 - 0.5 * np.cos(np.pi * (dist + 1) / (ramp + 1))
    weights = np.zeros(size, dtype=np.float64)
    weights[margin : size - margin] = np.where(dist < ramp, rising, 1.0)
    return weights


@dataclass(frozen=True)
class StitchPlan:
    """Where tiles go over a `width` x `height` scene and how their predictions are weighted.

    With `blend`, a margin of overlap // 4 px is dropped from tile edges (the scene is reflect-
    padded by the same amount) and the taper's ramp spans the rest of the overlap. Without it,
    tiles are averaged with equal weights and nothing is dropped (the usual naive mean).
    """

    width: int
    height: int
    tile_size: int
    overlap: int
    blend: bool = True

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.overlap < self.tile_size:
            raise ValueError(
                f"overlap {self.overlap} must be at least 0 and under half the tile size "
                f"{self.tile_size}"
            )

    @property
    def margin(self) -> int:
        return self.overlap // 4 if self.blend else 0

    @property
    def ramp(self) -> int:
        return self.overlap - 2 * self.margin if self.blend else 0

    @property
    def grid(self) -> GridSpec:
        """Windows over the padded scene; padded pixel p is scene pixel p - margin."""
        pad = 2 * self.margin
        return GridSpec(self.width + pad, self.height + pad, self.tile_size, self.overlap)

    def weights(self) -> np.ndarray:
        """(T, T) float32 tile weights: the outer product of two tapers, or ones."""
        if not self.blend:
            return np.ones((self.tile_size, self.tile_size), dtype=np.float32)
        line = taper(self.tile_size, self.margin, self.ramp)
        return np.outer(line, line).astype(np.float32)


class RowBand:
    """Weighted sums of tile probabilities for the scene rows `top` .. `top + tile_size`."""

    def __init__(self, plan: StitchPlan, num_classes: int) -> None:
        self.plan = plan
        self.num_classes = num_classes
        self._weights = plan.weights()
        shape = (plan.tile_size, plan.width)
        self.top = 0
        self.filled = 0  # rows of the band that hold anything
        self.sums = np.zeros((num_classes, *shape), dtype=np.float32)
        self.weight = np.zeros(shape, dtype=np.float32)
        self.valid = np.zeros(shape, dtype=bool)

    def add(self, probs: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        """Add one tile: `probs` (K, T, T) and `valid` (T, T) of the window at padded (row, col)."""
        plan, m, keep = self.plan, self.plan.margin, self.plan.tile_size - 2 * self.plan.margin
        # The kept core of the window covers scene rows row..row+keep and columns col..col+keep.
        y1, x1 = min(row + keep, plan.height), min(col + keep, plan.width)
        if row < self.top or y1 - self.top > plan.tile_size:
            raise ValueError(f"tile at scene row {row} is outside the band at {self.top}")
        by0, by1 = row - self.top, y1 - self.top
        ty, tx = slice(m, m + y1 - row), slice(m, m + x1 - col)
        w = self._weights[ty, tx]
        self.sums[:, by0:by1, col:x1] += probs[:, ty, tx] * w
        self.weight[by0:by1, col:x1] += w
        self.valid[by0:by1, col:x1] = valid[ty, tx]
        self.filled = max(self.filled, by1)

    def release(self, until: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Remove the final rows `top` .. `until`: (first row, probabilities (K, n, W), valid)."""
        n = until - self.top
        if not 0 <= n <= self.filled:
            raise ValueError(f"cannot release rows {self.top}..{until}: {self.filled} rows filled")
        weight = self.weight[:n]
        if n and weight.min() <= 0:
            raise RuntimeError(f"rows {self.top}..{until} are not covered by any tile")
        probs = self.sums[:, :n] / weight
        valid = self.valid[:n].copy()
        top = self.top
        for buf in (self.sums[:], self.weight[None], self.valid[None]):
            buf[:, : buf.shape[1] - n] = buf[:, n:].copy()
            buf[:, buf.shape[1] - n :] = 0
        self.top, self.filled = until, self.filled - n
        return top, probs, valid

    def state(self) -> dict[str, Any]:
        """The rows in flight, for a checkpoint: only the filled part of the band."""
        n = self.filled
        return {
            "top": np.int64(self.top),
            "sums": self.sums[:, :n].copy(),
            "weight": self.weight[:n].copy(),
            "valid": self.valid[:n].copy(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `state()` checkpoint."""
        n = state["weight"].shape[0]
        self.top, self.filled = int(state["top"]), n
        self.sums[:] = 0
        self.weight[:] = 0
        self.valid[:] = False
        self.sums[:, :n] = state["sums"]
        self.weight[:n] = state["weight"]
        self.valid[:n] = state["valid"]
