"""One map frame for the footprints of scenes in several CRSs (neighbouring UTM zones, Landsat
and Sentinel-2 of one place): tiles of one place must meet there, whatever CRS their scenes use.

Scenes in one CRS keep their own coordinates. Where the georeferenced scenes use several, their
footprints are reprojected into the CRS of most of them (the first such scene's on ties), edges
densified so that a reprojected tile keeps its shape; a footprint that does not reproject to
finite coordinates there (a scene on the other side of the world) keeps its own CRS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache

import numpy as np
import shapely
from pyproj import CRS, Transformer

EDGE_POINTS = 16  # points per tile edge when a footprint is reprojected


@cache
def _crs(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)


@cache
def _transformer(source: str, target: str) -> Transformer:
    return Transformer.from_crs(_crs(source), _crs(target), always_xy=True)


def reproject(geom: shapely.Geometry, source: str, target: str) -> shapely.Geometry:
    """`geom` from the CRS `source` into `target` (both WKT), its edges densified first."""
    if source == target:
        return geom
    side = max(np.sqrt(geom.area), 1e-9)  # a tile's side, near enough
    dense = shapely.segmentize(geom, side / EDGE_POINTS)
    transformer = _transformer(source, target)
    return shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(*xy.T)))


class MapFrame:
    """Where footprints of scenes in the CRSs `wkts` (None: no CRS) meet, as `group` names."""

    def __init__(self, wkts: Sequence[str | None]) -> None:
        self.canonical: dict[str, str] = {}  # each WKT -> the first equal CRS's WKT
        for wkt in wkts:
            if wkt is not None and wkt not in self.canonical:
                same = (w for w in self.canonical.values() if _crs(w) == _crs(wkt))
                self.canonical[wkt] = next(same, wkt)
        counts = Counter(self.canonical[w] for w in wkts if w is not None)
        self.crs = max(counts, key=counts.__getitem__) if counts else None  # first on ties

    def place(self, geom: shapely.Geometry, wkt: str) -> tuple[str, shapely.Geometry]:
        """The group and geometry of a footprint in the CRS `wkt`: the frame's CRS and `geom`
        there, or its own CRS and `geom` as given where it does not reproject."""
        own = self.canonical[wkt]
        if self.crs is None or own == self.crs:
            return own, geom
        placed = reproject(geom, own, self.crs)
        if not np.isfinite(shapely.get_coordinates(placed)).all() or not placed.is_valid:
            return own, geom
        return self.crs, placed
