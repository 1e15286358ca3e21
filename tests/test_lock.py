"""requirements.lock pins everything both pyproject.toml files ask for, at versions they accept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.lock import locked_versions

ROOT = Path(__file__).resolve().parents[1]


def _requirements(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    return [Requirement(r) for r in project["dependencies"] + [r for e in extras for r in e]]


@pytest.mark.parametrize("pyproject", ["pyproject.toml", "convlora/pyproject.toml"])
def test_the_lock_satisfies_every_requirement(pyproject: str) -> None:
    pins = locked_versions()
    local = {"convlora", "convlora-geo"}
    for requirement in _requirements(ROOT / pyproject):
        name = canonicalize_name(requirement.name)
        if name in local or (requirement.marker and not requirement.marker.evaluate()):
            continue
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
        )


def test_the_lock_pins_the_torch_ci_installs() -> None:
    pins = locked_versions()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
    assert "convlora" not in pins and "convlora-geo" not in pins
