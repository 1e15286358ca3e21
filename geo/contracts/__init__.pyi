"""Types of the names `geo.contracts` imports on first use (read by lazy_loader and mypy)."""

from .adapter import AdapterMetadata as AdapterMetadata
from .classes import IGNORE as IGNORE
from .classes import ClassInfo as ClassInfo
from .classes import ClassMap as ClassMap
from .classes import load_class_map as load_class_map
from .normalization import Normalization as Normalization
from .tile_store import SPLITS as SPLITS
from .tile_store import StoreInfo as StoreInfo
