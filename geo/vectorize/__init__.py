"""Vectorisation: class rasters into measured, styled polygons, one per object, in bounded
memory (`VectorizeConfig`, `check_vectorize`, `vectorize`)."""

from __future__ import annotations

from geo.vectorize.config import VectorizeConfig
from geo.vectorize.polygons import polygon_batches, polygonize, write_polygons
from geo.vectorize.run import check_vectorize, vectorize

__all__ = [
    "VectorizeConfig",
    "check_vectorize",
    "polygon_batches",
    "polygonize",
    "vectorize",
    "write_polygons",
]
