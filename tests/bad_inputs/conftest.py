"""Bad inputs through the real CLI: broken files made from the bundled data, a trained tiny
adapter, and `refused`, which runs a command in-process and checks the whole contract."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.support.cli import Marker, make_broken, make_work, mount_tmpfs, train
from tests.support.models import save_tiny_sam
from tests.support.stores import agnet_store


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return make_work(tmp_path / "work")


@pytest.fixture(scope="session")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_broken(tmp_path_factory.mktemp("broken"))


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


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AgNet tile store: 2 scenes, 64 px tiles, 7 bands, 8 classes."""
    return agnet_store(
        tmp_path_factory.mktemp("store") / "agnet.zarr", range(0, 25), count=2, tile_size=64,
        val_fraction=0.25, scheduler="sync",
    )  # fmt: skip


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
