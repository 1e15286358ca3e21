"""Errors caused by user input to the model core (bad checkpoint, mismatched adapter, setting)."""

from __future__ import annotations

from typing import Any

Difference = tuple[str, Any, Any]
"""A setting that differs: (its dotted key, the earlier value, the value now)."""


class ConvLoRAInputError(ValueError):
    """A user-supplied model input is unusable; the message names it and says what is wrong."""


class SettingsChanged(ConvLoRAInputError):
    """A run folder holds an earlier run of other settings, so it cannot resume there.
    `differences` lists each setting that differs, the model's and training's first (a stable
    sort: differences named otherwise keep their order)."""

    def __init__(
        self,
        run_dir: str,
        differences: list[Difference],
        advice: str = "use another --out folder, or delete it to start over",
    ) -> None:
        self.run_dir = run_dir
        self.differences = sorted(
            differences, key=lambda d: not d[0].startswith(("model.", "train."))
        )
        super().__init__(
            f"{run_dir}: an earlier run with other settings is there "
            f"({_summary_of(self.differences)}); {advice}"
        )


def _summary_of(differences: list[Difference], shown: int = 4) -> str:
    """The first `shown` differences, values only where they are short (and none for a
    difference given without them, as (key, None, None)), and how many more."""
    parts = [
        f"{k}: {old!r} -> {new!r}"
        if len(repr(old)) + len(repr(new)) <= 40 and (old, new) != (None, None)
        else f"{k} changed"
        for k, old, new in differences[:shown]
    ]
    more = len(differences) - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
