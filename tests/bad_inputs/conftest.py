"""Bad inputs through the real CLI: broken files made from the bundled data, a trained tiny
adapter, and `refused`, which runs a command in-process and checks the whole contract."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.cli import main
from geo.training import train_on_store
from tests.convlora.conftest import save_tiny_sam
from tests.test_train_cli import agnet_store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
PIVOTS = DATA / "nebraska_center_pivots_landsat"
SCENE = PIVOTS / "nebraska_landsat_albers_30m.tif"
PIVOT_LABELS = PIVOTS / "pivots.gpkg"
PIVOT_CLASSES = ROOT / "examples" / "pivots_classes.yaml"
AGNET = DATA / "agnet_landsat8_cdl"
AGNET_CLASSES = ROOT / "examples" / "agnet_classes.yaml"
AGNET_TILES = list(csv.DictReader((AGNET / "tiles.csv").open()))
AGNET_IMAGE = AGNET / AGNET_TILES[0]["image"]
AGNET_LABEL = AGNET / AGNET_TILES[0]["label"]
NO_SERVER = "http://127.0.0.1:9/api"  # nothing listens there: a flow that starts fails loudly


def snapshot(folder: Path, dirs: bool = True) -> dict[str, tuple]:
    """Every entry under `folder`, hidden ones too: files by sha256 and mtime, folders by
    mtime (`dirs`; a folder's mtime changes when anything is created in it, even briefly)."""
    entries: dict[str, tuple] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_dir():
            entries[key] = ("dir", path.stat().st_mtime_ns if dirs else None)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[key] = ("file", digest, path.stat().st_mtime_ns)
    if dirs:
        entries["."] = ("dir", folder.stat().st_mtime_ns)
    return entries


def run_cli(*argv: object) -> tuple[int, str]:
    """Run `convlora-geo ARGV` in this process; returns (exit status, what it wrote to stderr).

    stderr goes to a buffer that stays open: handlers that Prefect creates on its first flow
    run keep writing to the stream of that moment (pytest's capsys would close it).
    """
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        code = main([str(a) for a in argv])
    return code, buffer.getvalue()


def refused(folder: Path, argv: list[object], *messages: str) -> str:
    """Run a command that must be refused before any work: exit status 2, one error line that
    holds every message, no traceback, and nothing new or changed in `folder`. Returns the line.
    """
    before = snapshot(folder)
    with temporary_settings({PREFECT_API_URL: NO_SERVER}):  # no flow can run
        code, err = run_cli(*argv)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == 2, err[-3000:]
    assert line.startswith(f"convlora-geo {argv[0]}: error: "), err[-3000:]
    assert "Traceback" not in err and err.count(": error: ") == 1, err[-3000:]
    for message in messages:
        assert message in line, line
    assert snapshot(folder) == before
    return line


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return make_work(tmp_path / "work")


def make_work(folder: Path) -> Path:
    """The folder that holds a command's output, with an earlier output that must survive."""
    (folder / "earlier").mkdir(parents=True)
    (folder / "earlier" / "result.txt").write_text("an earlier run's output\n")
    (folder / ".hidden").write_text("hidden\n")
    return folder


def write_like(source: Path, target: Path, data: np.ndarray | None = None, **profile) -> Path:
    """A copy of a real raster with its profile (and optionally its pixels) changed."""
    with rasterio.open(source) as src:
        meta = {**src.profile, **profile}
        pixels = src.read() if data is None else data
    with rasterio.open(target, "w", **meta) as dst:
        dst.write(pixels)
    return target


@pytest.fixture(scope="session")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_broken(tmp_path_factory.mktemp("broken"))


def make_broken(folder: Path) -> dict[str, Path]:
    """Broken inputs made from the bundled real data, in `folder`."""
    files = {name: folder / name for name in ("notraster.tif", "truncated.tif", "empty.gpkg")}
    files["notraster.tif"].write_text("this is a text file, not a GeoTIFF\n")
    files["truncated.tif"].write_bytes(SCENE.read_bytes()[:100_000])
    compressed = write_like(SCENE, folder / "compressed.tif", compress="deflate")
    with rasterio.open(compressed) as src:  # garble a strip 3/4 down: both ends read fine
        strip = src.height * 3 // 4 // src.block_shapes[0][0]
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_0_{strip}", "TIFF", bidx=1))
    corrupt = bytearray(compressed.read_bytes())
    corrupt[offset : offset + 64] = b"\xff" * 64
    files["corrupt.tif"] = folder / "corrupt.tif"
    files["corrupt.tif"].write_bytes(bytes(corrupt))
    files["nocrs.tif"] = write_like(SCENE, folder / "nocrs.tif", crs=None)
    with rasterio.open(AGNET_IMAGE) as src:
        shape = (src.count, src.height, src.width)
    files["nodata.tif"] = write_like(
        AGNET_IMAGE, folder / "nodata.tif", np.full(shape, -9999, "int16"), nodata=-9999
    )
    pivots = gpd.read_file(PIVOT_LABELS)
    pivots.iloc[:0].to_file(files["empty.gpkg"], layer="pivots")
    files["zero_bytes.gpkg"] = folder / "zero_bytes.gpkg"
    files["zero_bytes.gpkg"].write_bytes(b"")
    mapped = pivots["id"].iloc[0]
    files["one_id.yaml"] = folder / "one_id.yaml"
    files["one_id.yaml"].write_text(
        f"unmapped: ignore\nclasses:\n  - name: background\n    values: [0]\n"
        f"  - name: pivot\n    values: [{mapped}]\n"
    )
    return files


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SAM checkpoint and broken ones: truncated, not SAM, carrying pickled code."""
    folder = tmp_path_factory.mktemp("checkpoints")
    sam = save_tiny_sam(folder / "sam_tiny.pth", image_size=64)
    files = {"sam": sam, "truncated": folder / "truncated.pth", "other": folder / "other.pth"}
    files["truncated"].write_bytes(sam.read_bytes()[: sam.stat().st_size // 2])
    torch.save({"encoder.weight": torch.zeros(4, 4)}, files["other"])
    files["pickle"] = folder / "pickle.pth"
    torch.save({"weight": torch.zeros(2), "hook": Marker()}, files["pickle"])
    return files


PICKLE_RAN = Path("/tmp/convlora-geo-bad-inputs-pickle-ran")


class Marker:
    """A Python object inside a checkpoint: unpickling it would create PICKLE_RAN."""

    def __reduce__(self) -> tuple:
        return (Path.touch, (PICKLE_RAN,))


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AgNet tile store: 2 scenes, 64 px tiles, 7 bands, 8 classes."""
    return agnet_store(tmp_path_factory.mktemp("store") / "agnet.zarr", range(0, 25), 2)


def train(store: Path, run: Path, sam_checkpoint: Path | None = None) -> Path:
    """Train the tiny SAM with LoRA for 2 steps at 64 px."""
    train_on_store(
        store, run, sam="tiny", sam_checkpoint=sam_checkpoint, adapter="lora", image_size=64,
        steps=2, batch_size=1, accumulate=1, device="cpu", progress=False,
    )  # fmt: skip
    return run


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, store: Path, checkpoints) -> dict[str, Path]:
    """Trained runs: `base` stores its SAM weights, `sam` needs the tiny SAM checkpoint,
    `vit_b` is `sam` relabelled as an adapter for SAM ViT-B."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {"base": train(store, folder / "base"), "sam": train(store, folder / "sam",
                                                                  checkpoints["sam"])}  # fmt: skip
    runs["vit_b"] = folder / "vit_b"
    shutil.copytree(runs["sam"], runs["vit_b"])
    meta = json.loads((runs["vit_b"] / "adapter.json").read_text())
    meta["config"]["sam_variant"] = "vit_b"
    (runs["vit_b"] / "adapter.json").write_text(json.dumps(meta))
    return runs


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a tmpfs of `size` on `folder` (needs root: the test is skipped otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder holding an earlier output: a tmpfs remounted read-only."""
    folder = tmp_path / "readonly"
    mount_tmpfs(folder, "1m")
    try:
        (folder / "earlier.txt").write_text("an earlier run's output\n")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
