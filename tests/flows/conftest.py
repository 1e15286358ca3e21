"""Flow tests run against one Prefect test server per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flows  # noqa: F401  (sets the temporary-server defaults before Prefect loads its settings)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (generous startup timeout: a fresh database migrates for ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
