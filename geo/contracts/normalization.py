"""Per-band statistics that travel from the tile store to the adapter and to prediction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geo.errors import InputError

KEYS = ("mean", "std", "p2", "p98")


@dataclass(frozen=True)
class Normalization:
    """Mean, standard deviation and 2nd/98th percentiles of each band, over all scenes.

    Inputs are z-scored with mean and std; p2/p98 stretch quick-looks and tell prediction when a
    scene's values lie far outside what the model was trained on.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    p2: tuple[float, ...]
    p98: tuple[float, ...]

    def __post_init__(self) -> None:
        lengths = {len(getattr(self, k)) for k in KEYS}
        if len(lengths) != 1 or not self.mean:
            raise InputError("band statistics: one mean, std, p2 and p98 per band are needed")
        if not all(math.isfinite(v) for k in KEYS for v in getattr(self, k)):
            raise InputError("band statistics: values must be finite numbers")

    @property
    def bands(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(getattr(self, k)) for k in KEYS}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Normalization:
        """Parse {"mean": [...], "std": [...], "p2": [...], "p98": [...]}; p2/p98 default to
        mean -/+ 2 std for stores written before they were recorded."""
        if not isinstance(data, Mapping) or not {"mean", "std"} <= set(data):
            raise InputError(f"{source}: band statistics need a mean and a std per band")
        try:
            mean, std = _floats(data["mean"]), _floats(data["std"])
            p2 = _floats(data.get("p2", [m - 2 * s for m, s in zip(mean, std, strict=True)]))
            p98 = _floats(data.get("p98", [m + 2 * s for m, s in zip(mean, std, strict=True)]))
        except (TypeError, ValueError) as err:
            raise InputError(f"{source}: invalid band statistics ({err})") from None
        try:
            return cls(mean, std, p2, p98)
        except InputError as err:
            raise InputError(f"{source}: {err}") from None


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
