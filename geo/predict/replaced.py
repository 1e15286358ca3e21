"""Why a scene's earlier outputs are replaced, in the user's terms: what differs between the
manifest they were written with and the run about to replace them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geo.options import changed_options

NOT_OPTIONS = {"collar": "the scene's fill collar", "aoi": "the area of interest",
               "margin": "the windows' margin", "blend": "the blending of windows"}  # fmt: skip
GENERIC = "another model or other settings"


def replaced_because(manifest: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    """What differs between an earlier `manifest` and this `run` record (`_run_record`)."""
    before, now = manifest.get("inputs"), run["inputs"]
    if not isinstance(before, dict):  # not a manifest of ours
        return GENERIC
    reasons = []
    if before.get("model") != now["model"]:
        reasons.append("another model")
    if (before.get("image") or {}).get("sha256") != now["image"]["sha256"]:
        reasons.append("the scene changed")
    reasons += changed_options(manifest.get("parameters") or {}, run["parameters"], NOT_OPTIONS)
    if manifest.get("format") != run["format"]:
        reasons.append("outputs of another convlora-geo version")
    return "; ".join(reasons) or GENERIC
