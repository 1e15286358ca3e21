"""Types of the names `geo.tiling` imports on first use (read by lazy_loader and mypy)."""

from .config import TileConfig as TileConfig
from .inputs import TilingRequest as TilingRequest
from .inputs import check_tiling as check_tiling
from .inputs import input_files as input_files
from .run import tile_scenes as tile_scenes
