"""requirements.lock as data: the version pinned for each package on this interpreter."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def locked_versions(path: Path = LOCK) -> dict[str, str]:
    """Canonical package name -> pinned version, for the lines whose markers apply here."""
    pins = {}
    for line in path.read_text().splitlines():
        if not line or line[0] in "# -":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins
