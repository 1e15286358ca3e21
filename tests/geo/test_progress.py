"""Progress lines where no terminal shows a bar (Prefect's UI, CI logs, a file)."""

from __future__ import annotations

import logging

import pytest

from geo.contracts.classes import load_class_map
from geo.io.progress import Progress
from geo.vectorize.polygons import polygon_batches
from tests.support.paths import EXAMPLES, FTW_PREDICTION

FTW_CLASSES = load_class_map(EXAMPLES / "ftw_classes.yaml")


def test_a_resumed_run_counts_what_the_interrupted_one_did(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """3,760 tiles left of 5,329: the line ends at 5329/5329 tiles (it read 3760/3760, as if
    the store had 3,760 tiles), and the rate is this run's own."""
    with (
        caplog.at_level(logging.INFO, logger="geo.progress"),
        Progress(5329, "tiling", "tile", initial=5329 - 3760) as bar,
    ):
        bar.update(3760)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("tiling: 5329/5329 tiles (")
    assert float(line.split("(")[1].split()[0]) > 0


def test_vectorising_says_how_far_it_is(caplog: pytest.LogCaptureFixture) -> None:
    """`vectorize` (and prediction's polygons) report the rows of the class raster read: a line
    at the end where no terminal shows a bar (a 20,000 px raster was 75 s without a word)."""
    with caplog.at_level(logging.INFO, logger="geo.progress"):
        frames = polygon_batches(
            FTW_PREDICTION, None, FTW_CLASSES.classes, band_rows=64, progress=True
        )
        assert sum(len(frame) for frame in frames) > 200
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"vectorising {FTW_PREDICTION.name}: 189/189 rows (")
