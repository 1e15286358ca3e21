"""Boundary-aware labels: the outline of each label polygon, a given width, as its own class.

A pixel of a polygon is an outline pixel when a pixel within the width (centre to centre) lies
outside that polygon: in the background, in another polygon, or in a polygon of the same class
that merely touches it. Adjacent parcels are thus taught apart by a boundary twice the width, and
a parcel meeting the background by one the width. Computed on polygon ids, per window with a
margin of the width, so overlapping windows agree pixel for pixel.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def disk(radius: float) -> np.ndarray:
    """The offsets within `radius` pixels (centre to centre) as a boolean footprint."""
    reach = int(math.floor(radius))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    return np.asarray(dy**2 + dx**2 <= radius**2)


def outline(instances: np.ndarray, radius: float) -> np.ndarray:
    """Pixels of an instance (id > 0) within `radius` px of a pixel that is not in it.

    Exact for pixels at least `floor(radius)` px from the array's edge.
    """
    footprint = disk(radius)
    high = ndimage.maximum_filter(instances, footprint=footprint, mode="nearest")
    low = ndimage.minimum_filter(instances, footprint=footprint, mode="nearest")
    return np.asarray((instances > 0) & ((high != instances) | (low != instances)))
