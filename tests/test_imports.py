"""Packages import their names on first use (lazy-loader stubs): every name resolves, and a
command that needs no model does not pay for importing torch and SAM."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import NEBRASKA

LAZY_PACKAGES = [
    "convlora",
    "geo",
    "geo.contracts",
    "geo.evaluate",
    "geo.finetune",
    "geo.ingest",
    "geo.predict",
    "geo.tiling",
    "geo.vectorize",
]
HEAVY = ("torch", "segment_anything", "torchvision")


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules loaded by a fresh interpreter that runs `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module)
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_help_and_tiling_load_no_model_code() -> None:
    """`convlora-geo --help` builds every subcommand's options from the stage configs; tiling
    (the library and the `tile` flow) and vectorising need rasters and vectors only."""
    assert loaded_after("from flows.cli import build_parser\nbuild_parser()") == []
    code = "import geo\ngeo.TileConfig, geo.tile_scenes, geo.polygonize, geo.StoreInfo"
    assert loaded_after(code) == []
    assert loaded_after("import flows.tile\nfrom geo.vectorize import vectorize") == []


def test_model_names_load_the_model_stack() -> None:
    """The lazy names are the real ones: asking for a model builder imports torch and SAM (and
    not torchvision: `convlora.sam_modeling` skips SAM's package `__init__`)."""
    assert loaded_after("import convlora\nconvlora.build_model") == ["torch", "segment_anything"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_wrong_store_is_refused_before_torch_is_imported(command: str, tmp_path: Path) -> None:
    """A mistyped store is one line within a couple of seconds, not after importing torch."""
    store, other = str(tmp_path / "absent.zarr"), "--model" if command == "evaluate" else "--out"
    argv = [command, store, other, str(tmp_path / "run")]
    assert loaded_after(f"from flows.cli import main\nassert main({argv!r}) == 2") == []


@pytest.mark.parametrize("wrong", ["image", "model"])
def test_a_wrong_prediction_input_is_refused_before_torch_is_imported(
    wrong: str, tmp_path: Path
) -> None:
    """`predict` with a mistyped scene or model says so before it loads the model code."""
    image = str(tmp_path / "absent.tif") if wrong == "image" else str(NEBRASKA)
    argv = ["predict", image, "--model", str(tmp_path / "no-run"), "--out", str(tmp_path / "o")]
    code = f"from flows.cli import main\nassert main({argv!r}) == 2"
    assert loaded_after(code) == []
    assert not (tmp_path / "o").exists()
