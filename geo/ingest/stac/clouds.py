"""Clouds as no data (`--cloud-mask`): a Sentinel-2 L2A item's scene classification (SCL) made
the mask of its stacked bands, so that cloudy places are left out of its prediction (no data,
where a region layer shows the last clear prediction) instead of predicted from the clouds.

ESA's scene classification codes: 0 no data, 1 saturated or defective, 2 dark area, 3 cloud
shadow, 4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud (medium probability),
9 cloud (high probability), 10 thin cirrus, 11 snow or ice. Masked: 0, 1, 3, 8, 9, 10; snow is
kept, as the ground it covers is seen.
"""

from __future__ import annotations

from geo.errors import InputError
from geo.ingest.stac.items import StacAsset, StacItem
from geo.options import flag

SCL_MASKED = (0, 1, 3, 8, 9, 10)
SCL_CODES = 12
SCL_KEYS = ("scl", "SCL")  # Earth Search, Planetary Computer
NO_MASK = "none"


def scl_lut() -> str:
    """GDAL's LUT from scene classification codes to mask values (0 no data, 255 valid)."""
    return ",".join(f"{code}:{0 if code in SCL_MASKED else 255}" for code in range(SCL_CODES))


def mask_asset(item: StacItem, cloud_mask: str | None) -> StacAsset | None:
    """The scene classification asset `cloud_mask` names for `item`: by default its `scl` or
    `SCL` asset where it has one; none for "none"; else the asset of that key (InputError
    where the item has none)."""
    if cloud_mask == NO_MASK:
        return None
    if cloud_mask is None:
        return next((item.assets[k] for k in SCL_KEYS if k in item.assets), None)
    if cloud_mask not in item.assets:
        keys = ", ".join(sorted(item.assets))
        raise InputError(
            f"{flag('cloud_mask')} {cloud_mask}: item {item.id} has no such asset; its assets: "
            f"{keys}"
        )
    return item.assets[cloud_mask]
