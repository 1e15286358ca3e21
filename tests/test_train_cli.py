"""`convlora-geo train` and `evaluate` on real tile stores: SIGKILL + rerun, torchrun from outside
and from `--nproc` (every adapter kind, DDP over gloo on the CPU)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from convlora.config import ADAPTERS
from flows.cli import main
from flows.run_names import finetune_run
from geo.contracts.tile_store import StoreInfo
from geo.finetune.bands import rgb_positions
from geo.finetune.dataset import TileDataset
from geo.finetune.train import MAX_CLASS_WEIGHT, class_frequency_weights
from tests.support.cli import train_args
from tests.support.paths import NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS, ROOT
from tests.support.stores import small_agnet_store, tile

METRIC_NAMES = {
    "miou", "f1", "pixel_accuracy", "per_class_iou", "per_class_f1", "predicted_share", "pixels",
}  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 scenes of the training area: 12 tiles, 9 for training and 3 for validation."""
    return small_agnet_store(tmp_path_factory.mktemp("agnet") / "train.zarr", range(0, 25), 3)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def test_auto_class_weights_favour_rare_classes(store: Path) -> None:
    weights = class_frequency_weights(StoreInfo.read(store))
    assert len(weights) == 8 and all(w >= 0 for w in weights)
    counts = np.zeros(8, dtype=np.int64)
    dataset = TileDataset(store, "train")
    for i in range(len(dataset)):
        label = dataset[i]["label"].numpy()
        counts += np.bincount(label[label < 8], minlength=8)
    present = np.flatnonzero(counts)
    rare, common = present[np.argmin(counts[present])], np.argmax(counts)
    assert weights[rare] > weights[common]
    assert all(weights[c] == 0 for c in range(8) if counts[c] == 0)


def test_auto_class_weights_of_a_few_pixels_are_held_at_the_cap(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Classes of 9 and 1 training pixels among tens of thousands: their median-frequency
    weights (hundreds) are held at MAX_CLASS_WEIGHT and named; the others keep theirs."""
    info = StoreInfo.read(store)
    counts = (100_000, 50_000, 20_000, 9, 3_000, 0, 7_000, 1)
    sparse = replace(info, class_pixels={**info.class_pixels, "train": counts})
    with caplog.at_level(logging.INFO, logger="geo"):
        weights = class_frequency_weights(sparse)
    freq = np.array(counts, dtype=float) / sum(counts)
    median = np.median(freq[freq > 0])
    assert weights[3] == weights[7] == MAX_CLASS_WEIGHT
    assert weights[5] == 0
    for c in (0, 1, 2, 4, 6):
        assert weights[c] == pytest.approx(median / freq[c], rel=1e-5)
    names = [info.classes[3].name, info.classes[7].name]
    assert f"class weight(s) of {', '.join(names)} held at 10" in caplog.text


def test_rgb_bands_come_from_the_landsat_band_names(store: Path) -> None:
    info = StoreInfo.read(store)
    assert info.band_names[3] == "OLI_B4"
    assert rgb_positions(info, None) == (3, 2, 1)
    assert rgb_positions(info, [5, 4, 3]) == (4, 3, 2)
    waves = [(2, 490), (3, 560), (4, 665), (8, 842), (11, 1610), (12, 2190), (1, 443)]
    gdal_s2 = tuple(f"B{n}, central wavelength {w} nm" for n, w in waves)  # GDAL's SENTINEL2
    assert rgb_positions(replace(info, band_names=gdal_s2, band_colors=()), None) == (2, 1, 0)
    safe = ("B01_60m", "B02_10m", "B03_10m", "B04_10m", "B08_10m", "B11_20m", "B12_20m")
    assert rgb_positions(replace(info, band_names=safe, band_colors=()), None) == (3, 2, 1)
    numbered = tuple(f"Band {n}" for n in range(1, 8))  # how some tools name unnamed bands
    assert rgb_positions(replace(info, band_names=numbered, band_colors=()), None) == (0, 1, 2)


@pytest.mark.slow
def test_train_then_evaluate_prints_the_metrics(store: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = train_args(store, run, "--epochs", "1", "--mask-token-init", "copy+noise", "--json")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 5  # 9 tiles, accumulate 2
    metadata = json.loads((run / "adapter.json").read_text())
    assert [c["name"] for c in metadata["classes"]][:3] == [
        "background",
        "soybeans",
        "spring wheat",
    ]
    assert metadata["bands"] == list(range(1, 8)) and metadata["tile_size"] == 64
    assert metadata["config"]["band_init"] == [3, 2, 1]
    assert metadata["config"]["mask_token_init"] == "copy+noise"
    assert set(metadata["normalization"]) >= {"mean", "std"}
    assert metadata["store_fingerprint"]

    evaluate = ["evaluate", str(store), "--model", str(run), "--json", "--device", "cpu"]
    assert main([*evaluate, "--split", "val"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == METRIC_NAMES | {"split", "tiles", "store", "objects", "reference",
                                           "producers_accuracy", "users_accuracy",
                                           "confusion_matrix", "warnings"}  # fmt: skip
    assert metrics["tiles"] == 3
    assert metrics["miou"] == pytest.approx(summary["best_miou"])
    assert main(["evaluate", str(store), "--model", str(run)]) == 0  # all tiles by default
    text = capsys.readouterr().out
    assert "12 tiles" in text and "spring wheat" in text and "pixel accuracy" in text

    other_map = tmp_path / "two.yaml"
    other_map.write_text(
        "classes:\n  - name: background\n    values: [111]\n  - name: soy\n    values: [5]\n"
    )
    other = small_agnet_store(tmp_path / "other.zarr", range(0, 25), 1, other_map)
    assert main(["evaluate", str(other), "--model", str(run)]) == 2
    err = capsys.readouterr().err
    assert "classes" in err and "differ" in err and "Traceback" not in err


def test_a_run_starts_from_a_trained_model(
    store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    """`train --init-from RUN` without model options: the new run is the model's (SAM, adapter,
    image size, rank, SAM's R,G,B bands, SAM checkpoint: none), trains with its loss and class
    weights, and starts from its weights, scored before the first step: a learning rate of 1e-9
    keeps them, so no step beats them and they stay the best. Run again, it finds itself
    finished."""
    first, second = tmp_path / "first", tmp_path / "second"
    trained = train_args(store, first, "--epochs", "1", "--rank", "4", "--rgb-bands", "2,3,4",
                         "--loss", "semantic", "--class-weights", "auto")  # fmt: skip
    assert main(trained) == 0
    caplog.clear()
    argv = [
        "train", str(store), "--out", str(second), "--init-from", str(first), "--steps", "1",
        "--lr", "1e-9", "--batch-size", "1", "--accumulate", "2", "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert f"--init-from {first}: SAM tiny, adapter conv-lora, 64 px" in caplog.text
    assert "starts from random weights" not in caplog.text
    assert "those of the model it starts from (--init-from)" in caplog.text
    recipe = json.loads((first / "config.json").read_text())["train"]
    assert recipe["loss"] == "semantic" and recipe["class_weights"]
    kept = json.loads((second / "config.json").read_text())["train"]
    assert (kept["loss"], kept["class_weights"]) == (recipe["loss"], recipe["class_weights"])
    assert "--init-from: trained on with the semantic loss and class weights [" in caplog.text
    records = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["kind"] == "start" and records[0]["best"] and records[0]["step"] == 0
    assert "the starting weights score validation mIoU" in caplog.text
    best = json.loads((second / "adapter.json").read_text())["training"]
    assert best["step"] == 0 and best["val"] == records[0]["val"]
    model = json.loads((first / "adapter.json").read_text())["config"]
    assert json.loads((second / "adapter.json").read_text())["config"] == model
    assert model["rank"] == 4 and model["band_init"] == [1, 2, 3]
    start = load_file(str(first / "adapter.safetensors"))
    after = load_file(str(second / "last" / "adapter.safetensors"))
    assert set(after) == set(start)
    assert all(np.allclose(after[k].numpy(), start[k].numpy(), atol=1e-6) for k in start)
    assert json.loads((second / "config.json").read_text())["init_from"] == str(first)
    run = {"images": ["a.tif"], "out": str(second), "init_from": str(first)}
    assert finetune_run(run) == "a.tif -> second (tiny conv-lora)"  # the model's, not auto's
    capsys.readouterr()
    assert main(["info", "--model", str(second)]) == 0
    assert f"  trained further from: {first}\n" in capsys.readouterr().out
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "finished earlier (1/1 steps)" in caplog.text


def wait_for_checkpoint(proc: subprocess.Popen, state: Path, timeout: float = 300) -> dict:
    """Poll until the first step checkpoint is complete; return its position."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists():
            return json.loads(state.read_text())
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_sigkill_and_rerun_gives_the_uninterrupted_adapter_bit_for_bit(
    store: Path, tmp_path: Path
) -> None:
    args = train_args(
        store, tmp_path / "run", "--epochs", "2", "--checkpoint-every", "2", "--image-size", "128"
    )
    reference = train_args(
        store, tmp_path / "ref", "--epochs", "2", "--checkpoint-every", "2", "--image-size", "128"
    )
    done = subprocess.run(cli(*reference), capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no SAM checkpoint given" in done.stderr and "untrained SAM" in done.stderr

    proc = subprocess.Popen(
        cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT
    )
    try:
        position = wait_for_checkpoint(proc, tmp_path / "run" / "last" / "state.json")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not position["finished"] and position["step"] < position["total_steps"]

    again = subprocess.run(cli(*args), capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr
    for name in ("adapter.safetensors", "last/adapter.safetensors"):
        assert (tmp_path / "run" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    a, b = (json.loads((tmp_path / d / "last" / "state.json").read_text()) for d in ("run", "ref"))
    a.pop("metrics_offset"), b.pop("metrics_offset")  # throughput text differs in length
    assert a == b and a["finished"] and a["step"] == 10


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_accumulating(store: Path, tmp_path: Path) -> None:
    """`torchrun -m flows.cli train`: gloo DDP with batch 1 x 2 processes = 1 process x 2 passes."""
    common = ("--adapter", "lora", "--steps", "3", "--json")
    one = subprocess.run(
        cli(*train_args(store, tmp_path / "one", *common)),
        capture_output=True, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    ddp_args = train_args(store, tmp_path / "ddp", *common)
    ddp_args[ddp_args.index("--accumulate") + 1] = "1"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "flows.cli", *ddp_args],
        capture_output=True, text=True, env=ENV, cwd=ROOT,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count('"best_miou"') == 1  # only rank 0 reports

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "step"]

    assert len(losses(tmp_path / "ddp")) == 3
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)
    a = load_file(str(tmp_path / "ddp" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "one" / "adapter.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


@pytest.fixture(scope="module")
def pivots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Nebraska scene and its pivots in 128 px tiles (nodata corners included)."""
    return tile(
        [NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path_factory.mktemp("pivots") / "p.zarr",
        tile_size=128, overlap=32, val_fraction=0.25,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_nproc_trains_every_adapter_kind_in_two_processes(
    pivots: Path, tmp_path: Path, adapter: str, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    """`train --nproc 2` starts torchrun (gloo on the CPU), relays rank 0's progress lines to
    this process's logging, and prints rank 0's summary once; what the check chose (R,G,B
    bands, the image size) is said once, not again by rank 0."""
    args = train_args(
        pivots, tmp_path / "run", "--steps", "2", "--nproc", "2", "--progress", "--json"
    )
    args[args.index("--adapter") + 1] = adapter
    args[args.index("--accumulate") + 1] = "1"
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["best_miou"] is not None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2
    progress = [r.getMessage() for r in caplog.records if r.name == "convlora.training"]
    assert any(line.startswith("step 2/2  loss ") for line in progress), progress
    assert (tmp_path / "run" / "adapter.safetensors").exists()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("geo.finetune")]
    assert len(said) == len(set(said)), said
    assert any(line.startswith("SAM's R, G, B channels: ") for line in said), said


@pytest.mark.slow
def test_a_failing_training_process_fails_the_run_with_its_error_line(
    pivots: Path, tmp_path: Path
) -> None:
    """Tiles that cannot be decoded pass the pre-flight check (it reads the store's metadata)
    and stop the training processes: the error names the process and what failed."""
    store = tmp_path / "broken.zarr"
    shutil.copytree(pivots, store)
    chunks = [p for p in (store / "images").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks, "the store holds no image chunk to break"
    for chunk in chunks:
        chunk.write_bytes(b"not a blosc chunk")
    args = train_args(store, tmp_path / "run", "--steps", "2", "--nproc", "2")
    with pytest.raises(RuntimeError, match=r"^training process [01] failed: \w+Error: ") as err:
        main(args)
    assert "\n" not in str(err.value)
