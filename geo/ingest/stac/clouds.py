"""Clouds as no data (`--cloud-mask`): an item's cloud mask asset made the mask of its stacked
bands, so that cloudy places are left out of its prediction (no data, where a region layer shows
the last clear prediction) instead of predicted from the clouds.

Three kinds of asset are read, each mapped to GDAL's mask values (0 no data, 255 valid) by a
lookup table on the asset's values, so that planning downloads no pixel:

- Sentinel-2 L2A scene classification (`scl` at Earth Search, `SCL` at Planetary Computer), ESA's
  codes: 0 no data, 1 saturated or defective, 2 dark area, 3 cloud shadow, 4 vegetation, 5 not
  vegetated, 6 water, 7 unclassified, 8 cloud (medium probability), 9 cloud (high probability),
  10 thin cirrus, 11 snow or ice. Masked: 0, 1, 3, 8, 9, 10.
- Landsat Collection 2 `qa_pixel` bit flags (USGS): bit 0 fill, 1 dilated cloud, 2 cirrus,
  3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water, 8-15 confidences. Masked: any of bits 0-4.
- HLS `Fmask` bit flags (NASA): bit 0 cirrus, 1 cloud, 2 adjacent to cloud or shadow, 3 cloud
  shadow, 4 snow or ice, 5 water, 6-7 aerosol; 255 is fill. Masked: any of bits 0-3.

Snow is kept everywhere, as the ground it covers is seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from geo.errors import InputError
from geo.ingest.stac.items import StacAsset, StacItem
from geo.options import flag

NO_MASK = "none"


@dataclass(frozen=True)
class MaskKind:
    """A kind of cloud mask asset: what it is, the asset keys it goes by, how many bits its
    values take, and which values are valid pixels."""

    name: str
    keys: tuple[str, ...]  # lower case, as words of a key: `SCL` and `scl_20m` are "scl"
    bits: int
    valid: Callable[[int], bool]

    def lut(self, dtype: str) -> str:
        """GDAL's LUT from the asset's values (stored as `dtype`) to mask values (0 no data,
        255 valid); see `_lut`."""
        return _lut(self, dtype)


@cache
def _lut(kind: MaskKind, dtype: str) -> str:
    """GDAL interpolates between the values listed and holds the end values beyond them, so a
    value is listed where validity changes, and on either side. Values stored in a signed type
    of the kind's width (a QA band written as int16) are read as the unsigned values whose bits
    they hold."""
    size = 1 << kind.bits
    signed = np.dtype(dtype).kind == "i" and np.dtype(dtype).itemsize * 8 == kind.bits
    values = range(-size // 2, size // 2) if signed else range(size)

    def mask(value: int) -> int:
        return 255 if kind.valid(value % size) else 0

    points = {values[0]: mask(values[0]), values[-1]: mask(values[-1])}
    for value in values[1:]:
        if mask(value) != mask(value - 1):
            points[value - 1], points[value] = mask(value - 1), mask(value)
    return ",".join(f"{v}:{points[v]}" for v in sorted(points))


def _no_bits(bits: int) -> Callable[[int], bool]:
    return lambda value: not value & bits


SCENE_CLASSIFICATION = MaskKind(
    "Sentinel-2 scene classification", ("scl",), 8, lambda code: code not in (0, 1, 3, 8, 9, 10)
)
LANDSAT_QA = MaskKind("Landsat Collection 2 QA bit flags", ("qa_pixel",), 16, _no_bits(0b11111))
HLS_FMASK = MaskKind("HLS Fmask bit flags", ("fmask",), 8, _no_bits(0b1111))
KINDS = (SCENE_CLASSIFICATION, LANDSAT_QA, HLS_FMASK)


@dataclass(frozen=True)
class CloudMask:
    """The asset an item's clouds are read from, and its kind."""

    asset: StacAsset
    kind: MaskKind


def kind_of(key: str) -> MaskKind | None:
    """The kind of cloud mask an asset key names (`SCL_20m` a scene classification), if any."""
    for kind in KINDS:
        if any(re.search(rf"(^|[_.-]){name}($|[_.-])", key.lower()) for name in kind.keys):
            return kind
    return None


def cloud_mask(item: StacItem, option: str | None) -> CloudMask | None:
    """The cloud mask `option` (`--cloud-mask`) names for `item`: by default its first asset of
    a known kind (`scl`, `SCL`, `qa_pixel`, `Fmask`) where it has one; none for "none"; else
    the asset of that key, which must be of a known kind (InputError otherwise)."""
    if option == NO_MASK:
        return None
    if option is None:
        found = ((asset, kind_of(key)) for key, asset in item.assets.items())
        return next((CloudMask(a, k) for a, k in found if k is not None), None)
    if option not in item.assets:
        keys = ", ".join(sorted(item.assets))
        raise InputError(
            f"{flag('cloud_mask')} {option}: item {item.id} has no such asset; its assets: {keys}"
        )
    kind = kind_of(option)
    if kind is None:
        known = "; ".join(f"{'/'.join(k.keys)}: {k.name}" for k in KINDS)
        raise InputError(
            f"{flag('cloud_mask')} {option}: not a cloud mask asset this tool reads; it reads "
            f"assets whose key holds {known}"
        )
    return CloudMask(item.assets[option], kind)
