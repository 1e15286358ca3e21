"""Fixtures shared by the library tests: a small adapter trained on the bundled Nebraska scene."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import train
from tests.support.paths import NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS
from tests.support.stores import tile


@pytest.fixture(scope="session")
def pivots_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SAM with LoRA trained for 2 steps on the Nebraska scene's 128 px tiles (bands
    1..3, georeferenced): a real adapter for prediction and ingest tests."""
    folder = tmp_path_factory.mktemp("pivots")
    store = tile(
        [NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, folder / "pivots.zarr", tile_size=128,
        overlap=32, val_fraction=0.25,
    )  # fmt: skip
    return train(store, folder / "run")
