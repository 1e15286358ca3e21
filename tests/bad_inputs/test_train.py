"""`convlora-geo train`, `evaluate` and `finetune` refuse bad stores, checkpoints and runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import pytest
import torch
import yaml

from geo.io.outputs import locked_folder
from tests.support.cli import PICKLE_RAN, mount_tmpfs, refused, run_cli, train_args
from tests.support.paths import (
    AGNET,
    AGNET_CLASSES,
    AGNET_TILES,
    PIVOT_CLASSES,
    PIVOT_LABELS,
    SCENE,
)
from tests.support.stores import small_agnet_store, tile


def finetune_args(work: Path, *extra: object, labels: Path = PIVOT_LABELS) -> list[object]:
    """`convlora-geo finetune` of the pivot scene into WORK/s.zarr and WORK/run."""
    return [
        "finetune", SCENE, "--labels", labels, "--class-map", PIVOT_CLASSES,
        "--store", work / "s.zarr", "--out", work / "run", *extra,
    ]  # fmt: skip


CASES = {  # name -> (argv from the store, checkpoints and output folder; message)
    "not a tile store": (
        lambda s, c, w: train_args(w / "earlier", w / "run"),
        "earlier: not a tile store",
    ),
    "missing SAM checkpoint": (
        lambda s, c, w: train_args(s, w / "run", "--checkpoint", "absent.pth"),
        "absent.pth: SAM checkpoint not found",
    ),
    "truncated SAM checkpoint": (
        lambda s, c, w: train_args(s, w / "run", "--checkpoint", c["truncated"]),
        "truncated.pth: not a readable weights-only SAM checkpoint",
    ),
    "not a SAM checkpoint": (
        lambda s, c, w: train_args(s, w / "run", "--checkpoint", c["other"]),
        "other.pth: does not fit SAM tiny: ",
    ),
    "checkpoint carrying pickled code": (
        lambda s, c, w: train_args(s, w / "run", "--checkpoint", c["pickle"]),
        "pickle.pth: refused, it holds Python objects besides tensors",
    ),
    "checkpoint of another SAM variant": (
        lambda s, c, w: train_args(s, w / "run", "--checkpoint", c["sam"], "--sam", "vit_b"),
        "sam_tiny.pth: does not fit SAM vit_b",
    ),
    "image size not a multiple of 16": (
        lambda s, c, w: train_args(s, w / "run", "--image-size", "100"),
        "--image-size 100: must be a positive multiple of 16 (try 96 or 112)",
    ),
    "image size too large": (
        lambda s, c, w: train_args(s, w / "run", "--image-size", "8192"),
        "--image-size 8192: must be at most 4096",
    ),
    "class weights for another class count": (
        lambda s, c, w: train_args(s, w / "run", "--class-weights", "1,2"),
        "--class-weights 1.0,2.0: give one weight per class (8: background, soybeans",
    ),
    "class weights that are all 0": (
        lambda s, c, w: train_args(s, w / "run", "--class-weights", "0,0,0,0,0,0,0,0"),
        "--class-weights 0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0: give weights of 0 or more, not all 0",
    ),
    "a negative class weight": (
        lambda s, c, w: train_args(s, w / "run", "--class-weights=-1,1,1,1,1,1,1,1"),
        "--class-weights -1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0: give weights of 0 or more",
    ),
    "output is a file": (
        lambda s, c, w: train_args(s, w / "earlier" / "result.txt"),
        "result.txt: exists and is not a folder",
    ),
    "a negative seed": (
        lambda s, c, w: train_args(s, w / "run", "--seed", "-1"),
        "--seed -1: Input should be greater than or equal to 0",
    ),
    "a device that does not exist": (
        lambda s, c, w: train_args(s, w / "run", "--device", "tpu"),
        "--device tpu: not a device; choose auto (CUDA when available, else CPU), cpu, cuda",
    ),
    "CUDA on a machine without it": (
        lambda s, c, w: train_args(s, w / "run", "--device", "cuda"),
        "--device cuda: CUDA is not available on this machine",
    ),
    "more training processes than GPUs": (
        lambda s, c, w: train_args(s, w / "run", "--nproc", "2", "--device", "cuda"),
        "--nproc 2: one process per GPU"
        if torch.cuda.is_available()
        else "--device cuda: CUDA is not available on this machine",
    ),
    "no training processes": (
        lambda s, c, w: train_args(s, w / "run", "--nproc", "0"),
        "--nproc 0: Input should be greater than or equal to 1",
    ),
    "evaluate: not a tile store": (
        lambda s, c, w: ["evaluate", w / "absent.zarr", "--model", w],
        "absent.zarr: not a tile store",
    ),
    "finetune: scene without its labels": (
        lambda s, c, w: finetune_args(w, labels=w / "absent.gpkg"),
        "absent.gpkg: labels file not found",
    ),
    "finetune: CUDA on a machine without it, before any tiling": (
        lambda s, c, w: finetune_args(w, "--tile-size", "128", "--device", "cuda"),
        "--device cuda: CUDA is not available on this machine",
    ),
    "finetune: checkpoint carrying pickled code": (
        lambda s, c, w: finetune_args(
            w,
            "--tile-size",
            "128",
            "--overlap",
            "32",
            "--sam",
            "tiny",
            "--checkpoint",
            c["pickle"],
            "--image-size",
            "128",
        ),  # fmt: skip
        "pickle.pth: refused",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_before_any_work(
    case: str, store: Path, checkpoints, work: Path
) -> None:
    argv_of, message = CASES[case]
    refused(work, argv_of(store, checkpoints, work), message)
    assert not PICKLE_RAN.exists()


def test_a_second_run_into_the_same_run_folder_stops_with_one_line(store: Path, work: Path) -> None:
    """While one run trains into WORK/run (its lock held), another one into it is refused up
    front, and trains once the first is gone."""
    with locked_folder(work / "run", "training run"):
        refused(work, train_args(store, work / "run", "--steps", "1"),
                f"{work / 'run'}: another run is writing this training run now")  # fmt: skip
    code, err = run_cli(*train_args(store, work / "run", "--steps", "1"))
    assert code == 0, err[-3000:]  # the lock is gone with the run that held it


def test_a_read_only_run_folder_is_refused(store: Path, readonly: Path) -> None:
    refused(readonly, train_args(store, readonly / "run"), "is not writable")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--image-size", "128"], "(--image-size: 64 -> 128;"),
        (
            ["--rank", "5", "--rgb-bands", "3,2,1"],
            "(--rgb-bands: [4, 3, 2] -> [3, 2, 1]; --rank: 3 -> 5;",
        ),
        (
            ["--store", "two-class"],
            "; the tile store (its classes, bands, tiles or statistics) changed)",
        ),
    ],
)
def test_an_earlier_run_with_another_size_or_class_count_is_kept(
    change: list[str], message: str, store: Path, runs, work: Path
) -> None:
    """Training into a run folder of another image size, other options or another store is
    refused, naming the options as typed (not the model core's settings) and how to train on
    from that model, and the run there (adapter, last/, metrics) is left as it was."""
    shutil.copytree(runs["base"], work / "run")
    if change[0] == "--store":
        store, change = _two_class_store(work.parent), []
    argv = [*train_args(store, work / "run", "--adapter", "lora", "--steps", "2"), *change]
    line = refused(work, argv, "an earlier run with other settings is there", message)
    line = line.replace(str(work / "run"), "RUN")
    assert "another --out folder (--init-from RUN there trains on from this model)" in line
    assert len(line) < 450, line  # long values cut short


def test_finetune_refuses_a_run_of_another_store_before_tiling_replaces_the_store(
    runs, work: Path
) -> None:
    """`finetune --overwrite` with other tiling options, into a run folder trained on another
    store: refused before any tiling, so the store there is left as it was (it was replaced,
    and then training refused the run folder)."""
    shutil.copytree(runs["base"], work / "run")
    tile([SCENE], [PIVOT_LABELS], PIVOT_CLASSES, work / "s.zarr", tile_size=128, overlap=32)
    argv = finetune_args(work, "--tile-size", "64", "--overwrite", "--sam", "tiny")
    refused(work, argv, "run: an earlier run on another tile store is there")


def test_evaluate_refuses_a_model_of_other_classes(runs, work: Path) -> None:
    other = _two_class_store(work.parent)
    argv = ["evaluate", other, "--model", runs["base"], "--device", "cpu"]
    refused(
        work,
        argv,
        "classes ['background', 'soybeans'] differ from the model's",
        f"(tile it with --class-map {runs['base']} (the model's own))",
    )


def _two_class_store(folder: Path) -> Path:
    class_map = folder / "two.yaml"
    class_map.write_text(
        "classes:\n  - name: background\n    values: [111]\n  - name: soybeans\n    values: [5]\n"
    )
    return small_agnet_store(folder / "two.zarr", range(0, 25), 1, class_map)


def test_a_full_disk_while_training_is_one_line(store: Path, tmp_path: Path) -> None:
    """Training into a 128 KiB tmpfs stops with one line and exit status 2; no temporary
    adapter file is left and the earlier output there is intact."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "128k")
    try:
        (disk / "earlier.txt").write_text("an earlier run's output\n")
        code, err = run_cli(*train_args(store, disk / "run", "--steps", "2", "--adapter", "lora"))
        line = err.strip().splitlines()[-1]
        assert code == 2 and line.startswith("convlora-geo train: error: no space left on device")
        assert "Traceback" not in err
        assert (disk / "earlier.txt").read_text() == "an earlier run's output\n"
        assert [p.name for p in disk.rglob("*.tmp")] == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_foreign_config_in_the_run_folder_is_named(store: Path, work: Path) -> None:
    (work / "run").mkdir()
    (work / "run" / "config.json").write_text('{"my": "own settings"}\n')
    refused(
        work, train_args(store, work / "run"),
        "run/config.json: exists and was not written by convlora-geo; move it away, or pass "
        "--overwrite to replace it",
    )  # fmt: skip


def test_a_store_with_one_class_is_refused(work: Path, tmp_path: Path) -> None:
    """Every pivot drawn as background (a class map that lists their kind under it)."""
    labels = tmp_path / "fields.gpkg"
    gpd.read_file(PIVOT_LABELS).assign(kind="field").to_file(labels)
    classes = tmp_path / "classes.yaml"
    classes.write_text("classes:\n  - name: background\n    values: [field]\n"
                       "  - name: pivot\n    values: [pivot]\n")  # fmt: skip
    empty = tile(
        [SCENE], [labels], classes, tmp_path / "empty.zarr",
        tile_size=128, overlap=32, label_field="kind", dask_address="sync",
    )  # fmt: skip
    refused(
        work,
        train_args(empty, work / "run"),
        "empty.zarr: its training tiles hold only 'background', nothing to tell apart",
    )


def _no_labelled_pixel_store(folder: Path) -> Path:
    """An AgNet store tiled with the AgNet class names but codes no label raster holds: every
    label pixel is unmapped, so ignored."""
    document = yaml.safe_load(AGNET_CLASSES.read_text())
    for i, entry in enumerate(document["classes"]):
        entry["values"] = [1000 + i]
    class_map = folder / "codes_absent.yaml"
    class_map.write_text(yaml.safe_dump(document))
    return small_agnet_store(folder / "unlabelled.zarr", range(0, 25), 1, class_map)


def test_a_store_without_a_labelled_pixel_is_refused(runs, work: Path, tmp_path: Path) -> None:
    store = _no_labelled_pixel_store(tmp_path)
    argv = ["evaluate", store, "--model", runs["base"], "--device", "cpu"]
    refused(work, argv, "unlabelled.zarr: no labelled pixel in split 'all'")
    refused(
        work, train_args(store, work / "run"),
        "unlabelled.zarr: its training tiles hold no labelled pixel, nothing to tell apart",
    )  # fmt: skip


def _resume_args(store: Path, run: Path) -> list[object]:
    """The command line of `tests.support.cli.train`, which trained the `runs` fixtures."""
    return [
        "train", store, "--out", run, "--sam", "tiny", "--adapter", "lora", "--image-size", "64",
        "--steps", "2", "--batch-size", "1", "--accumulate", "1", "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip


DAMAGE = {  # file in RUN_DIR/last -> how it is damaged
    "training_state.pt": lambda data: data[: len(data) // 2],
    "adapter.safetensors": lambda data: data[: len(data) // 2],
    "adapter.json": lambda data: data[:-10],
}


@pytest.mark.parametrize("name", DAMAGE)
def test_a_damaged_resumable_state_is_named_with_how_to_start_over(
    name: str, store: Path, runs, work: Path
) -> None:
    """Rerunning the command of a run whose RUN_DIR/last holds a damaged file: one line
    naming the file and saying how to start over; the run folder is left as it was."""
    run = work / "run"
    shutil.copytree(runs["base"], run)
    code, err = run_cli(*_resume_args(store, run))  # the intact run: nothing left to do
    assert code == 0, err[-3000:]
    damaged = run / "last" / name
    damaged.write_bytes(DAMAGE[name](damaged.read_bytes()))
    refused(
        work, _resume_args(store, run),
        f"{damaged}: damaged training state", f"move {run / 'last'} away to start over",
    )  # fmt: skip


def test_init_from_refuses_a_start_its_weights_cannot_give(runs, work: Path) -> None:
    """`--init-from RUN`: options given otherwise than the model's, a store of other classes,
    the run folder itself and a model whose SAM checkpoint is gone are refused by name, before
    any training."""
    store, base = runs["store"], runs["base"]

    def start(store: Path, out: Path, model: Path, *extra: object) -> list[object]:
        return ["train", store, "--out", out, "--init-from", model, "--steps", "2", *extra]

    cases = [
        (start(store, work / "run", base, "--rank", "5"),
         f"--init-from {base}: --rank 5 (the model's 3); leave those options out"),
        (start(_two_class_store(work.parent), work / "run", base),
         f"classes ['background', 'soybeans'] differ from those of {base}"),
        (start(store, base, base),
         f"--init-from {base}: the run folder itself; give the new run another --out"),
        (start(store, base, base / "last"),
         f"--init-from {base / 'last'}: the run folder itself; give the new run another --out"),
        (start(store, work / "run", runs["sam_gone"]),
         "adapter needs the SAM tiny checkpoint with sha256"),
        (start(_reordered_store(work.parent), work / "run", base),
         f"bands OLI_B7, OLI_B6, OLI_B5, OLI_B4, OLI_B3, OLI_B2, OLI_B1, where {base} takes "
         "OLI_B1, OLI_B2"),
    ]  # fmt: skip
    for argv, message in cases:
        before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
        refused(work, argv, message)
        assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before


def _reordered_store(folder: Path) -> Path:
    """The `store` fixture's two AgNet scenes tiled with their bands in reverse order."""
    images = [AGNET / t["image"] for t in AGNET_TILES if int(t["grid_row"]) in range(0, 25)][:2]
    labels = [AGNET / t["label"] for t in AGNET_TILES if int(t["grid_row"]) in range(0, 25)][:2]
    return tile(
        images, labels, AGNET_CLASSES, folder / "reordered.zarr", tile_size=64,
        val_fraction=0.25, bands=[7, 6, 5, 4, 3, 2, 1], dask_address="sync",
    )  # fmt: skip
