"""Tiling by blocks and chains (tiles read through one dataset and its block cache, written by a
writer thread) writes exactly what tiling tile by tile writes, and resumes from the markers of
any block layout."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import zarr
from rasterio.windows import Window

from geo.contracts.classes import IGNORE
from geo.contracts.tile_store import (
    SPLIT_NAMES,
    TILE_INDEX,
    StoreInfo,
    create_store,
    open_arrays,
)
from geo.io.raster import fill_value, open_raster, read_window, scene_info
from geo.tiling import TileConfig, check_tiling, tile_scenes
from geo.tiling import blocks as tiling_blocks
from geo.tiling import inputs as tiling_inputs
from geo.tiling import run as tiling_run
from geo.tiling.blocks import BLOCK_TILES, STRIP_BYTES, plan_blocks
from geo.tiling.plan import plan_tiles
from tests.support.paths import AGNET, AGNET_CLASSES, AGNET_TILES, NEBRASKA, PIVOT_CLASSES, ROOT
from tests.support.paths import PIVOT_LABELS as PIVOTS

ARRAYS = ("images", "labels", "valid")
STAGES = {"check", "statistics", "read", "labels", "write", "index"}


def pivots_config(out: Path, **options: Any) -> TileConfig:
    """The Nebraska scene with its pivot polygons in 64 px tiles: 9 per grid row (2 blocks)."""
    return TileConfig.parse(
        {"images": [str(NEBRASKA)], "labels": [str(PIVOTS)], "class_map": str(PIVOT_CLASSES),
         "out": str(out), "tile_size": 64, "overlap": 8, "dask_address": "sync", **options}
    )  # fmt: skip


def agnet_config(out: Path) -> TileConfig:
    """Three AgNet scenes with their CDL label rasters (no CRS) in 32 px tiles, 5 per row."""
    tiles = AGNET_TILES[:3]
    return TileConfig.parse(
        {"images": [str(AGNET / t["image"]) for t in tiles],
         "labels": [str(AGNET / t["label"]) for t in tiles],
         "class_map": str(AGNET_CLASSES), "out": str(out), "tile_size": 32, "overlap": 4}
    )  # fmt: skip


def float_scene(path: Path) -> Path:
    """The Nebraska scene as float32 with +-inf and NaN pixels sprinkled over it."""
    with rasterio.open(NEBRASKA) as src:
        data, profile = src.read().astype("float32"), src.profile
    rng = np.random.default_rng(3)
    for value in (np.inf, -np.inf, np.nan):
        band, rows, cols = (rng.integers(0, n, 300) for n in data.shape)
        data[band, rows, cols] = value
    with rasterio.open(path, "w", **{**profile, "dtype": "float32"}) as dst:
        dst.write(data)
    return path


def tile_by_tile(store: Path, config: TileConfig, out: Path) -> None:
    """Rebuild `store`'s tile arrays the plain way (each tile's window read, labelled and
    written alone) into `out`."""
    request = check_tiling(config)
    group = zarr.open_group(str(store), mode="r")
    windows, scenes = group["window"][:], group["scene"][:]
    index = {name: group[name][:] for name in ("split", "scene", "window")}
    dtype, fill = str(group["images"].dtype), group["images"].fill_value
    create_store(out, len(windows), len(request.bands), request.tile_size, dtype, fill, index)
    images, labels, valids = open_arrays(out)
    for i, (window, s) in enumerate(zip(windows, scenes, strict=True)):
        scene, w = request.scenes[s], Window(*(int(v) for v in window))
        with open_raster(scene.path) as src, request.sources[s].reader() as read_labels:
            fill_ = fill_value(dtype, scene.nodata)
            data, valid, _ = read_window(src, w, request.bands, dtype, fill_)
            label, _ = read_labels(w)
        label[~valid] = IGNORE
        images[i], labels[i], valids[i] = data, label, valid


def infinite_pixels(config: TileConfig) -> int:
    """How many pixels of the scenes hold an infinite value in some band."""
    count = 0
    for path in config.images:
        with rasterio.open(path) as src:
            count += int(np.isinf(src.read()).any(axis=0).sum())
    return count


def chunk_files(store: Path, name: str) -> dict[str, bytes]:
    """Every encoded chunk of an array, by key, and its metadata document."""
    root = store / name
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_same_arrays(a: Path, b: Path) -> None:
    for name in ARRAYS:
        ours, theirs = chunk_files(a, name), chunk_files(b, name)
        assert ours.keys() == theirs.keys(), name
        assert all(ours[k] == theirs[k] for k in ours), f"{name}: encoded chunks differ"


CASES = {  # the store, and the most tiles a block may hold
    "pivots": (lambda tmp: pivots_config(tmp / "store.zarr"), BLOCK_TILES),  # 5 + 4 a row
    "agnet": (lambda tmp: agnet_config(tmp / "store.zarr"), 2),  # 2 + 2 + 1 a row
    "float": (
        lambda tmp: pivots_config(
            tmp / "store.zarr", images=[str(float_scene(tmp / "float.tif"))], tile_size=128,
            overlap=16,
        ),
        3,
    ),  # 3 + 2 a row
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_store_is_the_one_built_tile_by_tile(
    tmp_path: Path,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_config, strip_tiles = CASES[case]
    config = make_config(tmp_path)
    request = check_tiling(config)
    itemsize = np.dtype(request.scenes[0].dtype).itemsize
    tile_bytes = len(request.bands) * request.tile_size**2 * itemsize
    monkeypatch.setattr(tiling_blocks, "STRIP_BYTES", strip_tiles * tile_bytes)
    with caplog.at_level(logging.INFO, logger="geo.tiling"):
        store = tile_scenes(config, progress=False)
    reference = tmp_path / "reference.zarr"
    tile_by_tile(store, config, reference)
    infinite = infinite_pixels(config)
    assert_same_arrays(store, reference)

    group, built = zarr.open_group(str(store), mode="r"), zarr.open_group(str(reference))
    labels, valid, split = built["labels"][:], built["valid"][:], group["split"][:]
    for code, name in SPLIT_NAMES.items():
        kept = labels[split == code]
        counts = np.bincount(kept[kept != IGNORE], minlength=request.cmap.num_classes)
        assert group.attrs["class_pixels"][name] == counts.tolist(), name
    index, labelled = gpd.read_file(store / TILE_INDEX), labels != IGNORE
    shares = {
        "label_coverage": labelled,
        "foreground_fraction": labelled & (labels > 0),
        "valid_fraction": valid,
    }
    for column, mask in shares.items():
        assert index[column].tolist() == mask.mean(axis=(1, 2)).tolist(), column
    warned = [int(n) for n in re.findall(r"(\d+) pixels hold infinite", caplog.text)]
    assert warned == ([infinite] if infinite else [])
    assert (infinite > 0) == (case == "float")
    timed = next(r for r in caplog.records if hasattr(r, "stage_seconds"))
    assert set(timed.stage_seconds) == STAGES and min(timed.stage_seconds.values()) > 0


def test_blocks_are_runs_of_one_grid_row_within_the_strip_budget() -> None:
    scene = scene_info(str(NEBRASKA))
    tiles, _ = plan_tiles([scene, scene], 64, 8)  # 9 x 9 tiles per scene
    for tile_bytes, sizes in (
        (1, [5, 4]),
        (STRIP_BYTES // 3, [3, 3, 3]),
        (STRIP_BYTES * 2, [1] * 9),
    ):
        blocks = plan_blocks(tiles, tile_bytes)
        assert [t for b in blocks for t in b.tiles] == tiles
        assert len(blocks) == 2 * 9 * len(sizes)
        assert [len(b.tiles) for b in blocks[: len(sizes)]] == sizes
        for block in blocks:
            assert len({(t.scene, t.grid_row) for t in block.tiles}) == 1
            cols = [t.grid_col for t in block.tiles]
            assert cols == list(range(cols[0], cols[0] + len(cols)))  # neighbours, in order


def killed_before_the_index(config: TileConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the tiling of `config` until it fails before the tile index (its tiles all written);
    the temporary store it leaves."""

    def killed(*args: Any) -> None:
        raise RuntimeError("killed before the index")

    monkeypatch.setattr(tiling_run, "write_tile_index", killed)
    with pytest.raises(RuntimeError, match="killed"):
        tile_scenes(config, progress=False)
    monkeypatch.undo()
    out = Path(config.out)
    return out.parent / f".{out.name}.partial-{check_tiling(config).run_key[:16]}"


KILLED_WHILE_SWAPPING = """
import os, signal, sys
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, NEBRASKA
from tests.support.stores import tile
real = os.rename
def rename_then_die(src, dst):  # the machine dies once the old store is set aside
    real(src, dst)
    if ".old-" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename_then_die
tile([NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, sys.argv[1], tile_size=128, overwrite=True)
"""


def test_a_store_set_aside_by_a_run_killed_mid_swap_goes_with_the_next_run(
    tmp_path: Path,
) -> None:
    """`tile --overwrite` killed between moving the old store aside and moving the new one in:
    the next run publishes the store and removes the old one (it stayed, a full copy, for ever)."""
    out = tmp_path / "s.zarr"
    tile_scenes(pivots_config(out, tile_size=256), progress=False)
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_SWAPPING, str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not out.exists() and list(tmp_path.glob(".s.zarr.old-*"))
    tile_scenes(pivots_config(out, tile_size=128, overwrite=True), progress=False)
    assert StoreInfo.read(out).tile_size == 128
    assert [p.name for p in tmp_path.iterdir() if p.name != ".s.zarr.lock"] == ["s.zarr"]


def test_resume_from_markers_of_another_block_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed under an older layout (8 consecutive tiles per block, across grid rows) left
    markers for some blocks: the new run skips exactly the blocks whose tiles they all cover."""
    config = pivots_config(tmp_path / "resumed.zarr")
    partial = killed_before_the_index(config, monkeypatch)
    progress = partial / "_progress"
    rows = [r for m in progress.glob("block-*.json") for r in json.loads(m.read_text())]
    rows.sort(key=lambda r: r["tile"])
    assert len(rows) == 81
    for marker in progress.glob("block-*.json"):
        marker.unlink()
    kept = [k for k in range(11) if k not in (2, 3, 7)]  # old blocks 2, 3 and 7 never finished
    for k in kept:
        (progress / f"block-{k}.json").write_text(json.dumps(rows[8 * k : 8 * k + 8]))
    images, labels, valids = open_arrays(partial)
    for k in (2, 3, 7):  # unfinished: their tiles hold garbage
        lost = slice(8 * k, min(8 * k + 8, 81))
        images[lost], labels[lost], valids[lost] = 7, 7, True

    with caplog.at_level(logging.INFO, logger="geo.tiling"):
        store = tile_scenes(config, progress=False)
    # new blocks: each row of 9 tiles as 5 + 4; the kept markers cover tiles 0-15, 32-55 and
    # 64-80: both blocks of rows 0, 4, 5 and 8, one block of rows 1, 3 and 7
    assert "resuming" in caplog.text and "11 of 18 tile blocks already done" in caplog.text
    clean = tile_scenes(pivots_config(tmp_path / "clean.zarr"), progress=False)
    assert_same_arrays(store, clean)
    a, b = zarr.open_group(str(store)), zarr.open_group(str(clean))
    assert dict(a.attrs) | {"inputs": None} == dict(b.attrs) | {"inputs": None}
    index, clean_index = (gpd.read_file(s / TILE_INDEX) for s in (store, clean))
    assert index.equals(clean_index)
    assert not partial.exists()


def test_a_run_of_changed_inputs_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The temporary store of a killed run is resumed only by a run of the same fingerprint:
    after the scene's pixels change in place (same path, same settings) the run starts over,
    and its store is the one a clean run of the new scene writes."""
    scene = tmp_path / "scene.tif"
    scene.write_bytes(NEBRASKA.read_bytes())
    config = pivots_config(tmp_path / "s.zarr", images=[str(scene)])
    request = check_tiling(config)
    partial = killed_before_the_index(config, monkeypatch)
    marker = partial / "_progress" / tiling_run.FINGERPRINT_FILE
    assert marker.read_text() == request.fingerprint
    with rasterio.open(scene, "r+") as dst:  # the same size, other pixels
        dst.write(dst.read(window=Window(0, 0, 200, 200)) // 2, window=Window(0, 0, 200, 200))

    with caplog.at_level(logging.INFO, logger="geo.tiling"):
        store = tile_scenes(config, progress=False)
    assert "not resumed" in caplog.text and "already done" not in caplog.text
    clean = tile_scenes(pivots_config(tmp_path / "clean.zarr", images=[str(scene)]), progress=False)
    assert_same_arrays(store, clean)
    assert zarr.open_group(str(store)).attrs["fingerprint"] != request.fingerprint
    assert not partial.exists()


def test_tiles_are_written_while_the_inputs_are_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inputs' checksums do not hold up the tiles: here they are computed only once a tile
    block is finished (a run that waited for them first would never finish one)."""
    config = pivots_config(tmp_path / "s.zarr")
    markers = lambda: list(tmp_path.glob(".s.zarr.partial-*/_progress/block-*.json"))  # noqa: E731
    records = tiling_inputs.input_records

    def after_a_block(config: TileConfig) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while not markers():
            if time.monotonic() > deadline:
                raise TimeoutError("no tile block was written while the inputs were hashed")
            time.sleep(0.01)
        return records(config)

    monkeypatch.setattr(tiling_inputs, "input_records", after_a_block)
    store = tile_scenes(config, progress=False)
    monkeypatch.undo()
    assert zarr.open_group(str(store)).attrs["inputs"] == records(config)


@pytest.mark.slow
def test_dask_cluster_writes_the_store_local_threads_write(tmp_path: Path) -> None:
    from distributed import LocalCluster

    from flows.runtime import LOCAL_SCHEDULER_HTTP

    local = tile_scenes(pivots_config(tmp_path / "local.zarr", dask_address=None), progress=False)
    with LocalCluster(  # one worker process (it pickles the tasks), two threads
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs=LOCAL_SCHEDULER_HTTP,
    ) as cluster:
        config = pivots_config(tmp_path / "cluster.zarr", dask_address=cluster.scheduler_address)
        store = tile_scenes(config, progress=False)
    assert_same_arrays(store, local)
    a, b = zarr.open_group(str(store)), zarr.open_group(str(local))
    assert dict(a.attrs) == dict(b.attrs)


@pytest.mark.parametrize(("dtype", "nodata"), [("int16", 7), ("uint8", 7), ("int16", 7.5)])
def test_pixels_equal_to_nodata_are_invalid(tmp_path: Path, dtype: str, nodata: float) -> None:
    """Pixels equal to a band's nodata are invalid and hold the fill value (compared in the
    pixels' own type); a nodata value no pixel of the type can hold marks none."""
    path = tmp_path / f"{dtype}.tif"
    pixels = (np.arange(2 * 30 * 40) % 11).reshape(2, 30, 40).astype(dtype)
    profile = {"driver": "GTiff", "width": 40, "height": 30, "count": 2, "dtype": dtype,
               "nodata": nodata}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    with open_raster(str(path)) as src:
        data, valid, _ = read_window(src, Window(5, 5, 20, 20), [1, 2], dtype, 0)
    inside = pixels[:, 5:25, 5:25]
    expected = ~(inside == nodata).any(axis=0)
    assert np.array_equal(valid, expected) and expected.all() == (nodata == 7.5)
    assert np.array_equal(data, np.where(expected, inside, 0))
