"""Band mapping: which asset (and band of it) feeds each band the model was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from geo.errors import InputError
from geo.ingest.stac.items import StacAsset, StacItem


@dataclass(frozen=True)
class BandSpec:
    model_band: int  # 1-based, as in the adapter metadata's `bands`
    asset: str  # an asset key, or an eo:bands common name
    band: int = 1  # 1-based band within the asset

    def __str__(self) -> str:
        return self.asset if self.band == 1 else f"{self.asset}:{self.band}"


@dataclass(frozen=True)
class BandMap:
    """Asset keys for the model's bands, in the model's order."""

    bands: tuple[BandSpec, ...]

    def __str__(self) -> str:
        return ",".join(str(b) for b in self.bands)

    @property
    def model_bands(self) -> tuple[int, ...]:
        return tuple(b.model_band for b in self.bands)

    def resolve(self, item: StacItem) -> list[tuple[BandSpec, StacAsset, int]]:
        """(spec, asset, band within the asset) for each model band. A key that is not an asset
        key may be a common name (eo:bands) of exactly one single-band asset, or of one band of
        one asset. Raises InputError naming the missing key and listing the item's assets."""
        return [(spec, *_find_asset(item, spec, str(self))) for spec in self.bands]


def parse_band_map(text: str | Sequence[str], model_bands: Sequence[int] | None = None) -> BandMap:
    """Parse `red,green,blue,nir` (asset keys for the model's bands in order) or
    `1=red,2=green,3=blue,4=nir`; `KEY:N` takes band N of a multi-band asset (`visual:1`).

    `model_bands` are the adapter metadata's `bands` (default 1..N). The map must name each of
    them exactly once; an asset may feed several.
    """
    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text)]
    label = text if isinstance(text, str) else ",".join(text)
    if not entries or any(not e for e in entries):
        raise InputError(f"--bands {label!r}: give asset keys separated by commas, e.g. red,green")
    explicit = ["=" in e for e in entries]
    if any(explicit) and not all(explicit):
        raise InputError(f"--bands {label}: name every model band (1=red,2=green) or none")
    wanted = list(model_bands) if model_bands is not None else None
    specs = []
    for i, entry in enumerate(entries):
        if explicit[i]:
            number, _, entry = (s.strip() for s in entry.partition("="))
            if not number.isdigit() or int(number) < 1:
                raise InputError(f"--bands {label}: {number!r} is not a band number (1, 2, ...)")
            model_band = int(number)
        else:
            model_band = wanted[i] if wanted is not None and i < len(wanted) else i + 1
        key, band = entry, 1
        head, sep, tail = entry.rpartition(":")
        if sep and tail.isdigit() and head:
            key, band = head, int(tail)
            if band < 1:
                raise InputError(f"--bands {label}: {entry}: asset bands count from 1")
        specs.append(BandSpec(model_band, key, band))
    numbers = [s.model_band for s in specs]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"--bands {label}: a model band is named twice")
    if wanted is not None and sorted(numbers) != sorted(int(b) for b in wanted):
        raise InputError(
            f"--bands {label}: names {len(specs)} band(s) for model bands {numbers}, but the model "
            f"reads bands {list(wanted)}: give one asset key for each"
        )
    if wanted is not None:
        order = {int(b): i for i, b in enumerate(wanted)}
        specs.sort(key=lambda s: order[s.model_band])
    return BandMap(tuple(specs))


def _find_asset(item: StacItem, spec: BandSpec, label: str) -> tuple[StacAsset, int]:
    if spec.asset in item.assets:
        return item.assets[spec.asset], spec.band
    name = spec.asset.lower()
    hits = [
        (a, i + 1)
        for a in item.assets.values()
        for i, n in enumerate(a.common_names)
        if n and n.lower() == name
    ]
    single = [h for h in hits if len(h[0].common_names) == 1]
    choice = single or hits
    if spec.band == 1 and len({a.key for a, _ in choice}) == 1:
        return choice[0]
    keys = ", ".join(sorted(item.assets))
    if choice:
        options = ", ".join(sorted({a.key for a, _ in choice}))
        raise InputError(
            f"--bands {label}: item {item.id}: {spec.asset!r} is the common name of several "
            f"assets ({options}): give the asset key"
        )
    raise InputError(
        f"--bands {label}: item {item.id} has no asset {spec.asset!r}; its assets: {keys}"
    )
