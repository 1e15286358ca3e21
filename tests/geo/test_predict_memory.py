"""Peak memory of predict_scene hardly depends on the scene's number of rows (a subprocess per
scene): windows, scores and polygons stream in strips of rows, so memory may grow with a scene's
width (one strip) but not with its area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from tests.support.memory import peak_rss_of
from tests.support.paths import RGB_BYTE

CHILD = """
import sys
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import RGB_BYTE
from tests.support.predict import predict_image

image, out = sys.argv[1], sys.argv[2]
metadata = metadata_for(RGB_BYTE, [1, 2, 3], tile_size=256)
predict_image(image, ToyModel(3), metadata, out, overlap=32, batch_size=4)
"""


def mosaic(source: Path, dest: Path, rows: int, cols: int = 1) -> None:
    """A rows x cols mosaic of a real scene (alternate copies mirrored, so that edges meet
    seamlessly), written one block of the source at a time; it never sits in memory whole."""
    with rasterio.open(source) as src:
        profile = {
            **src.profile,
            "width": src.width * cols,
            "height": src.height * rows,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        with rasterio.open(dest, "w", **profile) as dst:
            for i in range(rows):
                for j in range(cols):
                    block = src.read()
                    block = block[:, ::-1] if i % 2 else block
                    block = block[:, :, ::-1] if j % 2 else block
                    window = Window(j * src.width, i * src.height, src.width, src.height)
                    dst.write(np.ascontiguousarray(block), window=window)


def peak_rss(image: Path, out: Path) -> dict[str, float]:
    """The prediction's peak RSS (MiB) and wall seconds, in a fresh interpreter."""
    result = peak_rss_of(CHILD, [str(image), str(out)], timeout=900)
    return {"peak_rss_mb": result["peak_rss_mib"], "seconds": result["wall_s"]}


@pytest.mark.slow
def test_sixteen_times_the_rows_raises_peak_memory_by_under_a_quarter(tmp_path: Path) -> None:
    """RGB.byte (791 x 718) against 16 copies of it stacked (791 x 11488, 9 Mpx): the same width,
    so the strips are the same size. Importing torch alone takes most of the 1x peak, so the
    growth is also held under 139 MiB: what whole-scene float32 accumulators (3 classes +
    weight) would add at 16x. (A 4 x 4 mosaic of the same area grows more, by its 4x wider
    strips: that is the strip's cost, not the area's.)"""
    big = tmp_path / "rgb_16x1.tif"
    mosaic(RGB_BYTE, big, 16)
    small = peak_rss(RGB_BYTE, tmp_path / "small")
    large = peak_rss(big, tmp_path / "large")
    print(f"peak RSS 1x {small['peak_rss_mb']:.0f} MB ({small['seconds']:.1f} s), "
          f"16x {large['peak_rss_mb']:.0f} MB ({large['seconds']:.1f} s)")  # fmt: skip
    with rasterio.open(tmp_path / "large" / "rgb_16x1_classes.tif") as out:
        assert (out.width, out.height) == (791, 718 * 16)
    assert large["peak_rss_mb"] < 1.25 * small["peak_rss_mb"]
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 4 * 791 * 718 * 16 * 4 / 2**20
