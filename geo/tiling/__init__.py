"""Tiling: labelled scenes into a Zarr tile store (`TileConfig`, `check_tiling`, `tile_scenes`)."""

from __future__ import annotations

from geo.tiling.config import TileConfig
from geo.tiling.inputs import TilingRequest, check_tiling, input_files
from geo.tiling.run import tile_scenes

__all__ = ["TileConfig", "TilingRequest", "check_tiling", "input_files", "tile_scenes"]
