"""Regular grids of overlapping square windows over a raster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

MAX_TILE_SIZE = 4096  # largest tile (window side) tiling and prediction accept


@dataclass(frozen=True)
class GridSpec:
    """`size` px windows stepping by `size - overlap`; the last row and column on the edge."""

    width: int
    height: int
    size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"tile size must be positive, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"overlap must be in [0, tile size), got {self.overlap}")

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def offsets(self, length: int) -> list[int]:
        """Start offsets along one axis; the last window ends at `length` (or `size` if shorter)."""
        if length <= self.size:
            return [0]
        starts = list(range(0, length - self.size, self.stride))
        starts.append(length - self.size)
        return starts

    @property
    def rows(self) -> list[int]:
        return self.offsets(self.height)

    @property
    def cols(self) -> list[int]:
        return self.offsets(self.width)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def windows(self) -> Iterator[tuple[int, int, Window]]:
        """(grid row, grid column, window) in row-major order; windows may exceed a small scene."""
        for i, row in enumerate(self.rows):
            for j, col in enumerate(self.cols):
                yield i, j, Window(col, row, self.size, self.size)
