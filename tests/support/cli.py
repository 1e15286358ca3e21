"""The command-line contract in tests: run a command in-process, and check that a refused one
changed nothing (exit status 2, one error line, no traceback, the output folder unchanged);
broken inputs made from the bundled real data."""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from prefect.settings import PREFECT_API_URL, temporary_settings
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC

from flows.cli import main
from geo.finetune import FinetuneConfig, train_on_store
from tests.support.paths import AGNET_IMAGE, PIVOT_LABELS, PIVOT_MASK, ROOT, SCENE

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


def cli_process(
    *argv: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `convlora-geo ARGV` in a process of its own, from the repository root, as a shell
    does (`env`: its environment, default this one's): all it prints, interpreter warnings and
    the early temporary server included."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *map(str, argv)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def run_cli(*argv: object) -> tuple[int, str]:
    """Run `convlora-geo ARGV` in this process; returns (exit status, what it wrote to stderr).

    stderr goes to a buffer that stays open: handlers that Prefect creates on its first flow
    run keep writing to the stream of that moment (pytest's capsys would close it).
    """
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        code = main([str(a) for a in argv])
    return code, buffer.getvalue()


def refused(folder: Path, argv: list[object], *messages: str, status: int = 2) -> str:
    """Run a command that must be refused before any work: exit status `status` (2: bad input;
    1: a service that does not answer), one error line that holds every message, no traceback,
    and nothing new or changed in `folder`. Returns the line."""
    before = snapshot(folder)
    with temporary_settings({PREFECT_API_URL: NO_SERVER}):  # no flow can run
        code, err = run_cli(*argv)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == status, err[-3000:]
    assert line.startswith(f"convlora-geo {argv[0]}: error: "), err[-3000:]
    assert "Traceback" not in err and err.count(": error: ") == 1, err[-3000:]
    for message in messages:
        assert message in line, line
    assert snapshot(folder) == before
    return line


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


def garbled(source: Path, target: Path, **profile) -> Path:
    """A deflate-compressed copy of `source` (with `profile` changes) whose strip 3/4 down is
    garbled: it opens, and its first and last blocks read fine."""
    compressed = write_like(source, target.with_name(f"clean_{target.name}"), compress="deflate",
                            **profile)  # fmt: skip
    with rasterio.open(compressed) as src:
        strip = src.height * 3 // 4 // src.block_shapes[0][0]
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_0_{strip}", "TIFF", bidx=1))
    corrupt = bytearray(compressed.read_bytes())
    compressed.unlink()
    corrupt[offset : offset + 64] = b"\xff" * 64
    target.write_bytes(bytes(corrupt))
    return target


def make_broken(folder: Path) -> dict[str, Path]:
    """Broken inputs made from the bundled real data, in `folder`."""
    files = {name: folder / name for name in ("notraster.tif", "truncated.tif", "empty.gpkg")}
    files["notraster.tif"].write_text("this is a text file, not a GeoTIFF\n")
    files["truncated.tif"].write_bytes(SCENE.read_bytes()[:100_000])
    files["corrupt.tif"] = garbled(SCENE, folder / "corrupt.tif")
    files["nocrs.tif"] = write_like(SCENE, folder / "nocrs.tif", crs=None)
    files["gcps.tif"] = write_like(AGNET_IMAGE, folder / "gcps.tif")  # 7 bands, as "base" reads
    with rasterio.open(files["gcps.tif"], "r+") as dst:  # corners on the map: GCPs, no grid
        corners = [(0, 0), (0, dst.width), (dst.height, 0), (dst.height, dst.width)]
        dst.gcps = ([GroundControlPoint(r, c, -97 + c * 3e-4, 47 - r * 3e-4) for r, c in corners],
                    rasterio.crs.CRS.from_epsg(4326))  # fmt: skip
    files["rpcs.tif"] = write_like(SCENE, folder / "rpcs.tif", crs=None, transform=None)
    with rasterio.open(files["rpcs.tif"], "r+") as dst:  # a level-1 product: RPCs, no grid
        unit = [1.0] + [0.0] * 19
        dst.rpcs = RPC(0, 100, 41.8, 0.1, unit, unit, 256, 256, -104.1, 0.1, unit, unit, 256, 256)
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
    files["zero_codes.gpkg"] = folder / "zero_codes.gpkg"  # a code field of 0 alone
    pivots.assign(code=0).to_file(files["zero_codes.gpkg"], layer="pivots")
    points = pivots.set_geometry(pivots.geometry.centroid)
    files["points.gpkg"] = folder / "points.gpkg"
    points.to_file(files["points.gpkg"], layer="pivots")
    files["outlines.gpkg"] = folder / "outlines.gpkg"  # each pivot's outline as a closed line
    pivots.set_geometry(pivots.geometry.boundary).to_file(files["outlines.gpkg"])
    files["two_layers.gpkg"] = folder / "two_layers.gpkg"
    pivots.to_file(files["two_layers.gpkg"], layer="pivots")
    points.to_file(files["two_layers.gpkg"], layer="wells")
    many = pd.concat([pivots] * 4, ignore_index=True)  # 76 features, each its own id
    many["id"] = range(len(many))
    files["many_values.gpkg"] = folder / "many_values.gpkg"
    many.to_file(files["many_values.gpkg"], layer="pivots")
    with rasterio.open(PIVOT_MASK) as src:  # label rasters that hold no classes
        shape = (1, src.height, src.width)
    noise = np.random.default_rng(0).random(shape, dtype="float32")
    files["continuous.tif"] = write_like(
        PIVOT_MASK, folder / "continuous.tif", noise, dtype="float32"
    )
    files["zeros.tif"] = write_like(PIVOT_MASK, folder / "zeros.tif", np.zeros(shape, "uint8"))
    files["aliases.yaml"] = folder / "aliases.yaml"
    files["aliases.yaml"].write_text(
        "a: &a [background, background, background, background, background, background]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
        "classes: [{name: background}, {name: pivot}]\n"
    )
    return files


PICKLE_RAN = Path("/tmp/convlora-geo-bad-inputs-pickle-ran")


class Marker:
    """A Python object inside a checkpoint: unpickling it would create PICKLE_RAN."""

    def __reduce__(self) -> tuple:
        return (Path.touch, (PICKLE_RAN,))


def train(store: Path, run: Path, sam_checkpoint: Path | None = None) -> Path:
    """Train the tiny SAM with LoRA for 2 steps at 64 px."""
    config = FinetuneConfig(
        store=str(store), out=str(run), sam="tiny",
        sam_checkpoint=None if sam_checkpoint is None else str(sam_checkpoint),
        adapter="lora", image_size=64, steps=2, batch_size=1, accumulate=1, device="cpu",
        progress=False,
    )  # fmt: skip
    train_on_store(config)
    return run


def mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a tmpfs of `size` on `folder`. It needs root (CI runs as root): a machine where
    it cannot is an error, never a silently skipped test."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode:
        raise RuntimeError(
            f"cannot mount a tmpfs on {folder} ({done.stderr.decode().strip()}): the full-disk "
            "and read-only tests need root"
        )


def train_args(store: Path, out: Path, *extra: object) -> list[str]:
    """`convlora-geo train` of the tiny SAM with Conv-LoRA at 64 px on the CPU."""
    return [
        "train", str(store), "--sam", "tiny", "--adapter", "conv-lora", "--image-size", "64",
        "--out", str(out), "--batch-size", "1", "--accumulate", "2", "--device", "cpu",
        "--log-every", "1", "--no-progress", *map(str, extra),
    ]  # fmt: skip
