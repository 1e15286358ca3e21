"""A prediction killed part-way resumes, and its outputs equal an uninterrupted run's, bytewise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import ROOT, SPACENET

CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import SPACENET
from tests.support.predict import predict_image

predict_image(SPACENET, ToyModel(1), metadata_for(SPACENET, [1], tile_size=128), sys.argv[1],
              overlap=16, batch_size=3, checkpoint_seconds=0)
"""
COMPARED = ("classes", "probability", "polygons", "style")


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out)], cwd=ROOT)


def state(out: Path) -> dict:
    try:
        return json.loads((out / f".{SPACENET.stem}.partial" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.slow
def test_killed_prediction_resumes_to_identical_files(tmp_path: Path) -> None:
    """SpaceNet Atlanta (900 x 900) in 128 px tiles: 8 grid rows, killed after 3 or more."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert start(whole).wait(timeout=600) == 0

    child = start(resumed)
    deadline = time.monotonic() + 600
    while state(resumed).get("next_row", 0) < 3 and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = state(resumed)
    assert killed_at["stage"] == "predict" and 3 <= killed_at["next_row"] < 8
    assert not (resumed / f"{SPACENET.stem}_classes.tif").exists()  # nothing half-written

    again = subprocess.run([sys.executable, "-c", CHILD, str(resumed)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    said = f"{SPACENET.stem}: resuming where an interrupted run stopped (predict, at row "
    assert f"{said}{killed_at['next_row']})" in again.stderr
    names = {name: f"{SPACENET.stem}{suffix}" for name, suffix in
             {"classes": "_classes.tif", "probability": "_probability.tif",
              "polygons": "_polygons.gpkg", "style": "_classes.qml"}.items()}  # fmt: skip
    for name in COMPARED:
        a, b = (whole / names[name]).read_bytes(), (resumed / names[name]).read_bytes()
        assert a == b, f"{name} differs after resuming"
    manifest = json.loads((resumed / f"{SPACENET.stem}_manifest.json").read_text())
    assert manifest["resumed"] is True
    assert sorted(p.name for p in resumed.iterdir()) == sorted(p.name for p in whole.iterdir())
    print(f"killed after grid row {killed_at['next_row']} of 8; outputs identical")
