"""`vectorize` of a 20000 x 20000 class raster stays in the memory of a few bands of rows: its
peak is that of a strip of the same width and a tenth of the height."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.windows import Window

from tests.support.memory import peak_rss_of
from tests.support.paths import EXAMPLES, FTW_PREDICTION

SIDE = 20_000
SPACING = 2_000  # one copy of the FTW prediction every 2000 px, down and across
PEAK_LIMIT_MIB = 2048  # measured 1736 MiB (a 20000 px wide band of 512 rows, torch imported)
CHILD = """
import json, sys
from geo.vectorize import VectorizeConfig, vectorize
raster, class_map, out = sys.argv[1:4]
result = vectorize(VectorizeConfig(rasters=[raster], class_map=class_map, out=out))
print(json.dumps(result))
"""


def lattice(dest: Path, height: int) -> int:
    """A SIDE-wide class raster of `height` rows holding copies of the real FTW 3-class
    prediction every SPACING px, written one copy at a time (never whole in memory; the tiles
    between copies stay sparse). Returns the number of copies."""
    with rasterio.open(FTW_PREDICTION) as src:
        ftw, profile = src.read(1), src.profile
    profile.update(width=SIDE, height=height, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", sparse_ok=True)  # fmt: skip
    copies = 0
    with rasterio.open(dest, "w", **profile) as dst:
        for row in range(0, height - ftw.shape[0], SPACING):
            for col in range(0, SIDE - ftw.shape[1], SPACING):
                dst.write(ftw[None], window=Window(col, row, ftw.shape[1], ftw.shape[0]))
                copies += 1
    return copies


@pytest.mark.slow
def test_20k_class_raster_vectorises_in_the_memory_of_a_strip(tmp_path: Path) -> None:
    runs = {}
    for name, height in (("strip", SPACING), ("scene", SIDE)):
        raster = tmp_path / f"{name}.tif"
        copies = lattice(raster, height)
        out = tmp_path / f"{name}.parquet"
        args = [str(raster), str(EXAMPLES / "ftw_classes.yaml"), str(out)]
        runs[name] = {**peak_rss_of(CHILD, args, timeout=1200), "copies": copies}
        ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
        assert len(ids) == 267 * copies  # each copy's fields of 4 px or more, none lost or merged
        assert len(set(ids)) == len(ids)
    strip, scene = runs["strip"], runs["scene"]
    print(f"{SIDE}x{SIDE}: {scene['copies']} FTW copies, {scene['wall_s']:.0f} s, peak RSS "
          f"{scene['peak_rss_mib']:.0f} MiB; {SIDE}x{SPACING} strip: {strip['wall_s']:.0f} s, "
          f"{strip['peak_rss_mib']:.0f} MiB")  # fmt: skip
    assert scene["peak_rss_mib"] < PEAK_LIMIT_MIB
    assert scene["peak_rss_mib"] < 1.25 * strip["peak_rss_mib"]
