"""What one stage hands the next, parsed and validated once: classes, tile stores, adapters."""

from __future__ import annotations

from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import IGNORE, ClassInfo, ClassMap, load_class_map
from geo.contracts.normalization import Normalization
from geo.contracts.tile_store import SPLITS, StoreInfo

__all__ = [
    "IGNORE",
    "SPLITS",
    "AdapterMetadata",
    "ClassInfo",
    "ClassMap",
    "Normalization",
    "StoreInfo",
    "load_class_map",
]
