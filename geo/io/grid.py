"""Regular grids of overlapping square windows over a raster, and the rules for their sizes.

Tiles are square, a multiple of SAM's 16 px patch, at most MAX_TILE_SIZE, and overlap their
neighbours by less than half a tile; the default overlap is an eighth of the tile, everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

PATCH_SIZE = 16  # SAM's patch: tile sides are multiples of it
MAX_TILE_SIZE = 4096  # largest tile (window side) tiling and prediction accept
OVERLAP_FRACTION = 8  # default overlap: tile size // 8


def tile_size_problem(size: int) -> str | None:
    """Why `size` is not a usable tile side (None when it is)."""
    if size < PATCH_SIZE or size % PATCH_SIZE:
        below = max(size // PATCH_SIZE * PATCH_SIZE, PATCH_SIZE)
        return f"must be a positive multiple of {PATCH_SIZE} (try {below} or {below + PATCH_SIZE})"
    if size > MAX_TILE_SIZE:
        return f"must be at most {MAX_TILE_SIZE}"
    return None


def overlap_problem(overlap: int, size: int) -> str | None:
    """Why `overlap` does not suit tiles of `size` (None when it does)."""
    if overlap < 0 or 2 * overlap >= size:
        most = (size - 1) // 2
        return f"must be at least 0 and less than half the tile size {size} (at most {most})"
    return None


def default_overlap(size: int) -> int:
    """The overlap used when none is given: an eighth of the tile."""
    return size // OVERLAP_FRACTION


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

    def core(self, row: int, col: int) -> Window:
        """The part of window (`row`, `col`) that starts no later than the next window: the
        cores cover the raster once, so a per-pixel count over them counts no pixel twice."""
        rows, cols = self.rows, self.cols
        bottom = rows[row + 1] if row + 1 < len(rows) else max(self.height, self.size)
        right = cols[col + 1] if col + 1 < len(cols) else max(self.width, self.size)
        return Window(cols[col], rows[row], right - cols[col], bottom - rows[row])

    def windows(self) -> Iterator[tuple[int, int, Window]]:
        """(grid row, grid column, window) in row-major order; windows may exceed a small scene."""
        for i, row in enumerate(self.rows):
            for j, col in enumerate(self.cols):
                yield i, j, Window(col, row, self.size, self.size)
