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
from safetensors.torch import save_file

from convlora.config import ModelConfig
from convlora.model import build_model
from tests.support.cli import Marker, make_broken, make_work, mount_tmpfs, train
from tests.support.stores import agnet_store
from tests.support.tiny_sam import save_tiny_sam


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
    """Trained runs: `base` stores its SAM weights, `sam` needs the tiny SAM checkpoint (and
    `sam_gone` one no longer where it was trained),
    `relabelled` is `sam` with an adapter.json claiming SAM ViT-B (its weights disagree), and
    `vit_b` a consistent LoRA adapter for SAM ViT-B (zero tensors of the right shapes)."""
    folder = tmp_path_factory.mktemp("runs")
    runs = {"base": train(store, folder / "base"), "sam": train(store, folder / "sam",
                                                                  checkpoints["sam"])}  # fmt: skip
    meta = json.loads((runs["sam"] / "adapter.json").read_text())
    meta["config"]["sam_variant"] = "vit_b"
    runs["relabelled"] = folder / "relabelled"
    shutil.copytree(runs["sam"], runs["relabelled"])
    (runs["relabelled"] / "adapter.json").write_text(json.dumps(meta))
    runs["vit_b"] = folder / "vit_b"
    runs["vit_b"].mkdir()
    with torch.device("meta"):
        model = build_model(ModelConfig.from_dict(meta["config"]))
    tensors = {k: torch.zeros(v.shape) for k, v in model.trainable_state_dict().items()}
    save_file(tensors, str(runs["vit_b"] / "adapter.safetensors"))
    (runs["vit_b"] / "adapter.json").write_text(json.dumps(meta))
    weights = (runs["base"] / "adapter.safetensors").read_bytes()
    for name, damaged in (
        ("truncated", weights[: len(weights) // 2]),
        ("oversized", (10**12).to_bytes(8, "little") + weights[8:]),
    ):
        runs[name] = folder / name
        shutil.copytree(runs["base"], runs[name])
        (runs[name] / "adapter.safetensors").write_bytes(damaged)
    gone = folder / "moved_away.pth"  # the checkpoint a run was trained on, since removed
    shutil.copy(checkpoints["sam"], gone)
    runs["sam_gone"] = train(store, folder / "sam_gone", gone)
    gone.unlink()
    runs["store"] = store
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
