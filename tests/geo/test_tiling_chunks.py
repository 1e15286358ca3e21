"""Tiles written straight into their chunk files are the files Zarr writes, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from geo.contracts.tile_store import create_store, open_arrays
from geo.tiling.chunks import ChunkFiles

FILLS = {"int16": -9999, "uint8": 0, "float32": np.nan, "float64": 0.0}  # images: dtype, fill
TILES, BANDS, SIZE = 5, 3, 16


def new_store(path: Path, dtype: str) -> tuple[zarr.Array, ...]:
    """The images, labels and valid arrays of an empty tile store, as tiling creates them."""
    index = {
        "split": np.zeros(TILES, dtype=np.uint8),
        "scene": np.zeros(TILES, dtype=np.int32),
        "window": np.zeros((TILES, 4), dtype=np.int64),
    }
    create_store(path, TILES, BANDS, SIZE, dtype, FILLS[dtype], index)
    return open_arrays(path)


def files(array: zarr.Array) -> dict[str, bytes]:
    """The array's chunk files by name."""
    folder = Path(array.store.root) / array.path
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "zarr.json"}


def some_tiles(array: zarr.Array, rng: np.random.Generator) -> list[np.ndarray]:
    """Tiles for `array`: values, only the fill value, a few other values in the fill, the
    fill again, and another value everywhere (-0.0 where the fill is 0.0: Zarr keeps it)."""
    shape, dtype, fill = array.shape[1:], array.dtype, array.fill_value
    only_fill = np.full(shape, fill, dtype=dtype)
    other = np.asarray(-0.0 if dtype.kind == "f" and fill == 0 else 1).astype(dtype)
    other = ~fill if dtype.kind == "b" else other
    sprinkled = only_fill.copy()
    sprinkled[..., rng.integers(0, SIZE, 3), rng.integers(0, SIZE, 3)] = other
    values = (
        rng.normal(100, 30, shape).astype(dtype) if dtype.kind != "b" else rng.random(shape) < 0.5
    )
    return [values, only_fill, sprinkled, only_fill.copy(), np.full(shape, other, dtype=dtype)]


@pytest.mark.parametrize("dtype", sorted(FILLS))
def test_chunk_files_equal_zarrs(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(0)
    by_zarr, ours = (
        new_store(tmp_path / "zarr.zarr", dtype),
        new_store(tmp_path / "ours.zarr", dtype),
    )
    for theirs, mine in zip(by_zarr, ours, strict=True):
        writer = ChunkFiles(mine)
        for i, tile in enumerate(some_tiles(mine, rng)):
            theirs[i : i + 1] = tile[np.newaxis]
            writer.write(i, tile)
        assert files(mine) == files(theirs), mine.path
        kept = [".".join(["c", str(i)] + ["0"] * (mine.ndim - 1)) for i in (0, 2, 4)]
        assert sorted(files(mine)) == kept, mine.path  # side by side: c.2.0.0.0
        np.testing.assert_array_equal(mine[:], theirs[:])


def test_a_tile_of_fill_removes_an_earlier_runs_chunk(tmp_path: Path) -> None:
    images = new_store(tmp_path / "store.zarr", "int16")[0]
    writer = ChunkFiles(images)
    writer.write(2, np.ones((BANDS, SIZE, SIZE), dtype="int16"))
    assert list(files(images)) == ["c.2.0.0.0"]
    writer.write(2, np.full((BANDS, SIZE, SIZE), -9999, dtype="int16"))
    assert files(images) == {}
    assert (images[2] == -9999).all()


def test_other_codecs_are_refused(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "store.zarr"), mode="w", zarr_format=3)
    array = group.create_array("x", shape=(2, 4), dtype="int16", compressors=ZstdCodec())
    with pytest.raises(ValueError, match="not a tile array"):
        ChunkFiles(array)
