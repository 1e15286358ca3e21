"""Fill collars: the 0-valued margin that warping or mosaicking leaves around a scene's data.

A scene reprojected or mosaicked without a nodata value (gdalwarp's default, QGIS's Merge,
exports from Earth Engine) is framed by pixels that are 0 in every band. Read as data, that frame
is predicted like land: polygons along the scene's edges, and zeros in the statistics. When a
multi-band scene declares no nodata and no mask, and enough of its edge is 0 in every band, the
pixels that are 0 in every band read are taken as no data. A one-band scene (heights, radar) can
be 0 where it has data, so it is left as it is; a nodata value set on a scene decides for it
(`rio edit-info --nodata VALUE scene.tif`).
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

COLLAR_VALUE = 0.0
EDGE_SAMPLES = 64  # pixels read along each of the four edges (at most)
COLLAR_SHARE = 0.02  # of the sampled edge pixels, at least, 0 in every band
COLLAR_MIN_PIXELS = 3


def declares_no_mask(src: rasterio.io.DatasetReader) -> bool:
    """True when no band declares a nodata value or has a mask (internal, alpha or per band)."""
    return all(flags == [MaskFlags.all_valid] for flags in src.mask_flag_enums)


def edge_pixels(src: rasterio.io.DatasetReader) -> np.ndarray:
    """(n, C) pixel values at up to EDGE_SAMPLES evenly spaced points along each edge, each read
    alone (one block each, so a striped or remote scene is not read in full)."""
    w, h = src.width, src.height
    cols = np.unique(np.linspace(0, w - 1, min(EDGE_SAMPLES, w)).round().astype(int))
    rows = np.unique(np.linspace(0, h - 1, min(EDGE_SAMPLES, h)).round().astype(int))
    points = {(0, int(c)) for c in cols} | {(h - 1, int(c)) for c in cols}
    points |= {(int(r), 0) for r in rows} | {(int(r), w - 1) for r in rows}
    return np.stack([src.read(window=Window(c, r, 1, 1))[:, 0, 0] for r, c in sorted(points)])


def detect_collar(src: rasterio.io.DatasetReader) -> float | None:
    """COLLAR_VALUE when `src` has two or more bands, no nodata or mask, and at least
    COLLAR_SHARE (and COLLAR_MIN_PIXELS) of its sampled edge pixels are COLLAR_VALUE in every
    band; else None."""
    if src.count < 2 or not declares_no_mask(src):
        return None
    filled = (edge_pixels(src) == COLLAR_VALUE).all(axis=1)
    if filled.sum() >= COLLAR_MIN_PIXELS and filled.mean() >= COLLAR_SHARE:
        return COLLAR_VALUE
    return None


def outside_collar(part: np.ndarray, collar: float | None) -> np.ndarray | bool:
    """(H, W) False where every band of `part` (C, H, W) holds the collar value; True (every
    pixel) without a collar."""
    if collar is None:
        return True
    return ~(part == part.dtype.type(collar)).all(axis=0)
