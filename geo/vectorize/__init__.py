"""Vectorisation: class rasters into measured, styled polygons, in bounded memory."""

from __future__ import annotations

from geo.vectorize.polygons import polygonize, write_polygons

__all__ = ["polygonize", "write_polygons"]
