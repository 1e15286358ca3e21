"""Ground units of a raster grid: metres per CRS unit and per pixel."""

from __future__ import annotations

import math

from affine import Affine
from rasterio.crs import CRS

EARTH_M_PER_DEGREE = 111_320.0


def metres_per_unit(crs: CRS | None, transform: Affine, height: int) -> float:
    """Metres per CRS unit: the linear unit of a projected CRS, and for degrees the length of one
    degree at the grid's central latitude (geometric mean of x and y). Without a CRS a pixel
    counts as 1 m: 1 / the pixel's side in grid units (whatever the geotransform)."""
    if crs is None:
        return 1.0 / math.sqrt(abs(transform.determinant))
    if crs.is_geographic:
        lat = transform.f + transform.e * height / 2  # at column 0
        return EARTH_M_PER_DEGREE * math.sqrt(max(math.cos(math.radians(lat)), 1e-6))
    return float(crs.linear_units_factor[1])


def pixel_metres(crs: CRS | None, transform: Affine, height: int) -> float:
    """The side of a pixel in metres (of a square pixel of the same area; pixels without a CRS
    count as 1 m)."""
    return math.sqrt(abs(transform.determinant)) * metres_per_unit(crs, transform, height)
