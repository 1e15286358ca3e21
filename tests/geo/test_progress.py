"""Progress lines where no terminal shows a bar (Prefect's UI, CI logs, a file)."""

from __future__ import annotations

import logging

import pytest

from geo.io.progress import Progress


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
