"""With nothing but defaults, tiling at 256 px, training the tiny SAM and predicting use 256 px
windows throughout: the adapter metadata and the prediction manifest say so. Without a Prefect
API configured, each flow command reports to a temporary local server of its own, which keeps
the runs and their logs in PREFECT_HOME and is gone when the command ends."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from flows.finetune import class_ious, no_validation
from geo.contracts import AdapterMetadata
from tests.support.cli import cli_process
from tests.support.paths import (
    ALEXANDRIA,
    BUILDINGS_CLASSES,
    PIVOT_CLASSES,
    PIVOT_LABELS,
    SCENE,
)
from tests.support.prefect_db import last_lines
from tests.support.stores import tile


@pytest.mark.slow
@pytest.mark.prefect
def test_tile_train_predict_at_256_px_with_defaults(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    store, run, out = tmp_path / "s.zarr", tmp_path / "run", tmp_path / "predictions"
    started = time.perf_counter()
    steps = [
        ("tile", SCENE, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES, "--out", store,
         "--tile-size", "256"),
        ("train", store, "--sam", "tiny", "--steps", "20", "--out", run),
        ("predict", SCENE, "--model", run, "--out", out),
    ]  # fmt: skip
    printed: dict[str, str] = {}
    for args in steps:
        done = cli_process(*args, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Error logging to API" not in done.stderr and "Traceback" not in done.stderr
        printed[args[0]] = done.stdout
    seconds = time.perf_counter() - started
    assert not [p for p in psutil.process_iter(["cmdline"]) if _serves(p, env["PREFECT_HOME"])]
    runs = last_lines(Path(env["PREFECT_HOME"]) / "prefect.db")
    for name in ("tile", "predict"):  # completed, and the run's last log line was delivered
        state, line = runs.get(name, ("", ""))
        assert state == "COMPLETED" and line.startswith("Finished in"), runs
    tiled = printed["tile"]  # what the store holds: tiles per split, labelled pixels per class
    assert "\n  9 tiles of 256 px, overlap 32: 7 train (4 labelled), 2 val (2 labelled)\n" in tiled
    assert "\n  labelled pixels: background " in tiled and "%), pivot " in tiled
    summary = printed["train"]  # for a reader: the best checkpoint's metrics, what to run next
    assert summary.startswith("trained 20 steps (") and f"into {run}" in summary
    assert "best checkpoint: step " in summary and "\npivot " in summary
    assert f"predict with: convlora-geo predict SCENE.tif --model {run}" in summary
    adapter = AdapterMetadata.read(run)
    assert adapter.tile_size == adapter.image_size == 256 and adapter.overlap == 32
    manifest = json.loads((out / f"{SCENE.stem}_manifest.json").read_text())
    assert manifest["parameters"]["tile_size"] == 256
    assert manifest["parameters"]["overlap"] == 32
    assert (out / f"{SCENE.stem}_quicklook.png").stat().st_size > 1000
    print(f"tile + train 20 steps + predict with defaults: {seconds:.0f} s")


def _serves(process: psutil.Process, prefect_home: str) -> bool:
    """Whether a process is a temporary Prefect server of that PREFECT_HOME."""
    try:
        cmdline = process.info["cmdline"] or []
        return (
            "flows.local_server" in cmdline
            and process.environ().get("PREFECT_HOME") == prefect_home
        )
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.prefect
def test_finetune_prints_the_metrics_as_a_table_or_as_json(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    run = tmp_path / "run"
    args = (
        "finetune", SCENE, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES,
        "--store", tmp_path / "s.zarr", "--out", run, "--tile-size", "128", "--sam", "tiny",
        "--image-size", "64", "--steps", "2", "--no-progress",
    )  # fmt: skip
    done = cli_process(*args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    assert "(val, " in text and "\npivot " in text and "\nobjects (IoU > 0.5): " in text
    assert f"predict with: convlora-geo predict SCENE.tif --model {run}" in text
    # the finished run is evaluated again, not retrained
    again = cli_process(*args, "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads(again.stdout)
    assert metrics["split"] == "val" and set(metrics["per_class_iou"]) == {"background", "pivot"}
    mean = next(line for line in text.splitlines() if line.startswith("mean "))
    assert mean.split()[1] == f"{metrics['miou']:.4f}"  # the same evaluation, both ways


@pytest.mark.slow
@pytest.mark.prefect
def test_finetune_on_a_scene_too_small_for_validation_trains_and_says_so(tmp_path: Path) -> None:
    """The lidar scene (283 x 259 px, one band) in 256 px tiles (its default is 128: nine tiles)
    gives four, too few for a spatial validation split: the run trains, says why it is not
    evaluated, and completes."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    run, store = tmp_path / "run", tmp_path / "s.zarr"
    args = (
        "finetune", ALEXANDRIA / "hag.tif", "--labels", ALEXANDRIA / "buildings.geojson",
        "--class-map", BUILDINGS_CLASSES, "--store", store, "--out", run, "--sam", "tiny",
        "--steps", "2", "--no-progress", "--tile-size", "256",
    )  # fmt: skip
    done = cli_process(*args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "all 4 tiles are training (smaller tiles, --tile-size 128, or more" in done.stderr
    assert "R=band 1, G=band 1, B=band 1, repeated: the store has 1 band(s)" in done.stderr
    reason = f"{store}: no labelled validation tile (its labelled tiles were too few for a spatial"
    assert done.stdout.startswith(reason) and (run / "adapter.safetensors").exists()
    assert f"predict with: convlora-geo predict SCENE.tif --model {run}" in done.stdout
    again = cli_process(*args, "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["not_evaluated"].startswith(reason)


def test_a_store_tiled_without_a_validation_split_says_which_flag(tmp_path: Path) -> None:
    """`finetune` explains a model left unevaluated by the option as it is typed."""
    store = tile([SCENE], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "s.zarr", val_fraction=0)
    assert no_validation(str(store)) == (
        f"{store}: no labelled validation tile (it was tiled with --val-fraction 0): the model "
        "is not evaluated"
    )


def test_a_class_without_validation_pixels_is_said_as_not_measured() -> None:
    """The finetune summary's IoU line names a class that neither the validation labels nor
    the predictions hold as n/a (evaluate gives None for it), instead of failing the run."""
    metrics = {"per_class_iou": {"background": 0.912, "pivot": 0.25, "well": None}}
    assert class_ious(metrics) == "background 0.91, pivot 0.25, well n/a"
