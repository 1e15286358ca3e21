"""Which store bands feed SAM's R, G, B channels: from the data, never from a guess at numbers. The
choice, in order: `--rgb-bands`; GDAL colour interpretation (red, green, blue); band descriptions
naming the colour ("Red", "green") or a known sensor band ("B04" on Sentinel-2 and Landsat 8/9,
GDAL's "B4, central wavelength 665 nm", "TM_B3" on Landsat 4-7); otherwise the first three bands, in
store order. Bands without descriptions are never read as sensor band numbers. The choice is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.options import flag

log = logging.getLogger(__name__)

COLOURS = ("red", "green", "blue")
_WORDS = tuple(re.compile(rf"\b{c}\b|^{c[0]}$", re.IGNORECASE) for c in COLOURS)
# Sensor band names: B04, B4, SR_B4, OLI_B4, TM_B3, ETM_B3, MSI B04 (an optional "A" as in B8A),
# GDAL's Sentinel-2 descriptions, "B4, central wavelength 665 nm", and SAFE file stems' "B04_10m".
# Not "Band 4" or "band_4".
_SENSOR_BAND = re.compile(
    r"^(?:(?P<sensor>oli|tm|etm\+?|sr|msi)[_ ]?)?b0*(?P<number>\d{1,2})a?(?:[,;(_\s].*)?$",
    re.IGNORECASE,
)
_SENSOR_RGB = {"tm": (3, 2, 1), "etm": (3, 2, 1), "etm+": (3, 2, 1)}  # else Sentinel-2 / OLI
_DEFAULT_RGB = (4, 3, 2)


def rgb_positions(
    store: StoreInfo, rgb_bands: Sequence[int] | None, given_by: str | None = None
) -> tuple[int, int, int] | None:
    """Store band positions (0-based) for SAM's R, G, B, or None for a 3-band store in order;
    `given_by`: where `rgb_bands` come from, for the log (default: the option)."""
    bands = list(store.bands)
    if rgb_bands is not None:
        missing = [b for b in rgb_bands if b not in bands]
        if len(rgb_bands) != 3 or missing:
            raise InputError(
                f"{flag('rgb_bands')} {','.join(map(str, rgb_bands))}: give 3 source bands among "
                f"the store's {','.join(map(str, bands))}"
            )
        chosen = tuple(bands.index(b) for b in rgb_bands)
        _report(store, chosen, given_by or f"as given by {flag('rgb_bands')}")
        return chosen  # type: ignore[return-value]
    for found, how in (
        (_by_colour(store.band_colors), "from the bands' colour interpretation"),
        (_by_name(store.band_names), "from the band descriptions"),
    ):
        if found is not None:
            _report(store, found, how)
            return found
    if len(bands) == 3:
        _report(store, (0, 1, 2), "the store's three bands in order")
        return None
    if len(bands) < 3:
        repeated = (0, 1 % len(bands), 2 % len(bands))
        _report(store, repeated, f"repeated: the store has {len(bands)} band(s)")
        return repeated
    first = (0, 1, 2)
    how = f"the first three (no colour in the band metadata; {flag('rgb_bands')} to choose)"
    _report(store, first, how)
    return first


def _report(store: StoreInfo, positions: Sequence[int], how: str) -> None:
    picked = ", ".join(
        f"{c[0].upper()}=band {store.bands[p]}"
        + (f" ({store.band_names[p]})" if store.band_names[p] else "")
        for c, p in zip(COLOURS, positions, strict=True)
    )
    log.info("SAM's R, G, B channels: %s, %s", picked, how)


def _by_colour(colors: Sequence[str]) -> tuple[int, int, int] | None:
    lowered = [c.lower() for c in colors]
    if all(c in lowered for c in COLOURS):
        return tuple(lowered.index(c) for c in COLOURS)  # type: ignore[return-value]
    return None


def _by_name(names: Sequence[str]) -> tuple[int, int, int] | None:
    by_word = [next((i for i, n in enumerate(names) if p.search(n)), None) for p in _WORDS]
    if None not in by_word:
        return tuple(by_word)  # type: ignore[return-value]
    numbered: dict[int, int] = {}
    rgb = _DEFAULT_RGB
    for i, name in enumerate(names):
        match = _SENSOR_BAND.match(name.strip())
        if match:
            numbered.setdefault(int(match["number"]), i)
            rgb = _SENSOR_RGB.get((match["sensor"] or "").lower(), rgb)
    if all(n in numbered for n in rgb):
        return tuple(numbered[n] for n in rgb)  # type: ignore[return-value]
    return None
