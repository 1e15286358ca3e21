"""A scene far larger than a few tiles tiles in bounded memory, and an interrupted run resumes."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.transform import from_origin
from rasterio.windows import Window

from tests.support.memory import peak_rss_of
from tests.support.stores import tile

PEAK_LIMIT_MIB = 1536
CLASSES = [{"name": "background"}, {"name": "field"}]
TILE = """
import json, sys
from tests.support.stores import tile
scene, labels, out = sys.argv[1:4]
tile([scene], [labels], json.loads(sys.argv[4]), out, tile_size=int(sys.argv[5]),
            overlap=64)
"""


def write_scene(path: Path, size: int) -> None:
    """A 1-band uint8 scene written strip by strip (never whole in memory), nodata 0 in the
    top-left 1024 x 1024 corner, with 10 m pixels in UTM 33N."""
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500_000, 5_000_000, 10, 10), "nodata": 0,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "zlevel": 1,
    }  # fmt: skip
    cols = np.arange(size, dtype=np.int32)[None, :] // 3
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            rows = np.arange(row, row + 512, dtype=np.int32)[:, None] // 5
            strip = (1 + (cols + rows) % 250).astype(np.uint8)
            if row < 1024:
                strip[:, :1024] = 0
            dst.write(strip[None], window=Window(0, row, size, 512))


def write_labels(path: Path, size: int) -> None:
    """Three field polygons; their extent spans the whole scene."""
    right, bottom = 500_000 + 10 * size, 5_000_000 - 10 * size
    polygons = [
        [[520_000, 4_990_000], [600_000, 4_990_000], [600_000, 4_900_000], [520_000, 4_900_000]],
        [[500_000, 5_000_000], [504_000, 5_000_000], [504_000, 4_996_000]],
        [[right - 40_000, bottom + 40_000], [right, bottom + 40_000], [right, bottom]],
    ]
    features = [
        {"type": "Feature", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}}
        for ring in polygons
    ]  # fmt: skip
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))


def tiling_args(scene: Path, labels: Path, out: Path, tile: int) -> list[str]:
    return [str(scene), str(labels), str(out), json.dumps(CLASSES), str(tile)]


def run_tiling(scene: Path, labels: Path, out: Path, tile: int) -> subprocess.Popen:
    args = [sys.executable, "-c", TILE, *tiling_args(scene, labels, out, tile)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_20k_scene_tiles_in_bounded_memory(tmp_path: Path) -> None:
    size = 20480
    scene, labels = tmp_path / "scene.tif", tmp_path / "fields.geojson"
    write_scene(scene, size)
    write_labels(labels, size)
    result = peak_rss_of(TILE, tiling_args(scene, labels, tmp_path / "big.zarr", 1024), 600)
    peak = result["peak_rss_mib"]
    print(f"20480 x 20480 scene: {result['wall_s']:.1f} s, peak RSS {peak:.0f} MiB")
    assert peak < PEAK_LIMIT_MIB
    group = zarr.open_group(str(tmp_path / "big.zarr"), mode="r")
    assert group["images"].shape == (22 * 22, 1, 1024, 1024)
    first = group["valid"][0]
    assert not first.any()  # the nodata corner: invalid, and its labels ignored
    assert np.all(group["labels"][0] == 255)
    windows = group["window"][:]
    inside = int(np.flatnonzero((windows[:, 0] == 3 * 960) & (windows[:, 1] == 3 * 960))[0])
    assert np.all(group["labels"][inside] == 1)  # deep inside the first field
    rows = np.arange(2880, 2880 + 1024)[:, None] // 5
    cols = np.arange(2880, 2880 + 1024)[None, :] // 3
    assert np.array_equal(group["images"][inside][0], 1 + (rows + cols) % 250)


@pytest.mark.slow
def test_interrupted_run_resumes_and_matches_a_clean_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = 4096
    scene, labels = tmp_path / "scene.tif", tmp_path / "fields.geojson"
    write_scene(scene, size)
    write_labels(labels, size)
    out = tmp_path / "resumed.zarr"
    proc = run_tiling(scene, labels, out, 256)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        markers = list(tmp_path.glob(".resumed.zarr.partial-*/_progress/block-*.json"))
        if len(markers) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    if proc.returncode == 0:
        pytest.skip("tiling finished before it could be interrupted")
    assert not out.exists()  # nothing half-written under the final name
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile([str(scene)], [str(labels)], CLASSES, out, tile_size=256, overlap=64)
    assert "tile blocks already done" in caplog.text
    clean = tile(
        [str(scene)],
        [str(labels)],
        CLASSES,
        tmp_path / "clean.zarr",
        tile_size=256,
        overlap=64,
    )
    a, b = zarr.open_group(str(store), mode="r"), zarr.open_group(str(clean), mode="r")
    for name in ("images", "labels", "valid", "split"):
        assert np.array_equal(a[name][:], b[name][:]), name
    assert a.attrs["fingerprint"] == b.attrs["fingerprint"]
    assert a.attrs["normalization"] == b.attrs["normalization"]  # seeded window sample
    assert not list(tmp_path.glob(".*partial*"))
