"""Flow tests run against one Prefect test server per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import flows  # noqa: F401  (sets the temporary-server defaults before Prefect loads its settings)

ROOT = Path(__file__).resolve().parents[2]
PIVOTS = ROOT / "examples" / "data" / "nebraska_center_pivots_landsat"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (generous startup timeout: a fresh database migrates for ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def pivots_scene() -> Path:
    return PIVOTS / "nebraska_landsat_albers_30m.tif"
