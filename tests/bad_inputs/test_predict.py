"""`convlora-geo predict` and `ingest` refuse bad scenes, models and checkpoints up front."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from geo.errors import InputError
from geo.evaluate import EvaluateConfig
from geo.io.outputs import exclusive
from geo.predict import PredictConfig, prepare_scene
from tests.support.cli import PICKLE_RAN, refused, run_cli, snapshot
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import AGNET_IMAGE, SCENE
from tests.support.predict import predict_image


def predict(scene: object, model: object, out: object, *extra: object) -> list:
    return ["predict", scene, "--model", model, "--out", out, "--device", "cpu", *extra]


CASES = {  # name -> (argv from broken files, checkpoints and runs; messages the line holds)
    "missing scene": (
        lambda b, c, r: predict("absent.tif", r["base"], "{out}"),
        "absent.tif: image not found",
    ),
    "not a raster": (
        lambda b, c, r: predict(b["notraster.tif"], r["base"], "{out}"),
        "notraster.tif: not a raster GDAL can read",
    ),
    "a folder of scenes": (
        lambda b, c, r: predict(b["notraster.tif"].parent, r["base"], "{out}"),
        "a folder, not a raster GDAL can read; give the scenes in it (",
    ),
    "truncated scene": (
        lambda b, c, r: predict(b["truncated.tif"], r["base"], "{out}"),
        "truncated.tif: corrupt or truncated raster",
    ),
    "a scene georeferenced by ground control points, not a grid": (
        lambda b, c, r: predict(b["gcps.tif"], r["base"], "{out}"),
        "gcps.tif: georeferenced by 4 ground control points, not a pixel grid; warp it onto one "
        "first (gdalwarp -t_srs EPSG:4326 gcps.tif grid.tif)",
    ),
    "fewer bands than the adapter": (
        lambda b, c, r: predict(SCENE, r["base"], "{out}"),
        "band 4 out of range (the scene has bands 1..3); the model reads bands "
        "[1, 2, 3, 4, 5, 6, 7]",
    ),
    "all nodata": (
        lambda b, c, r: predict(b["nodata.tif"], r["base"], "{out}"),
        "nodata.tif: no valid pixel",
    ),
    "an area of points": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--aoi", b["points.gpkg"]),
        "points.gpkg: an area of interest must be polygons, found",
        "Point (buffer points and lines into polygons first",
    ),
    "tile size not a multiple of 16": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--tile-size", "100"),
        "--tile-size 100: must be a positive multiple of 16 (try 96 or 112)",
    ),
    "tile size too large": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--tile-size", "8192"),
        "--tile-size 8192: must be at most 4096",
    ),
    "overlap half the tile": (
        lambda b, c, r: predict(
            AGNET_IMAGE, r["base"], "{out}", "--tile-size", "64", "--overlap", "32"
        ),
        "--overlap 32: must be at least 0 and less than half the tile size 64",
    ),
    "overlap half the model's tile": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--overlap", "40"),
        "--overlap 40: must be at least 0 and less than half the tile size 64",
    ),
    "missing model": (
        lambda b, c, r: predict(AGNET_IMAGE, "absent_run", "{out}"),
        "absent_run: model not found",
    ),
    "a file that is not an adapter": (  # not its folder's adapter, which is named instead
        lambda b, c, r: predict(AGNET_IMAGE, b["notraster.tif"], "{out}"),
        "notraster.tif: not an adapter file: give a run folder, or its adapter.safetensors",
    ),
    "folder without an adapter": (
        lambda b, c, r: predict(AGNET_IMAGE, b["notraster.tif"].parent, "{out}"),
        "adapter.safetensors: adapter file not found",
    ),
    "adapter that needs its SAM checkpoint, no longer where it was trained on it": (
        lambda b, c, r: predict(AGNET_IMAGE, r["sam_gone"], "{out}"),
        "adapter needs the SAM tiny checkpoint with sha256",
        "; pass it as --sam-checkpoint",
    ),
    "SAM checkpoint for an adapter that stores its base": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--sam-checkpoint", c["sam"]),
        "adapter was trained without a SAM checkpoint",
        "do not pass --sam-checkpoint",
    ),
    "missing SAM checkpoint": (
        lambda b, c, r: predict(AGNET_IMAGE, r["sam"], "{out}", "--sam-checkpoint", "absent.pth"),
        "absent.pth: SAM checkpoint not found",
    ),
    "truncated SAM checkpoint": (
        lambda b, c, r: predict(AGNET_IMAGE, r["sam"], "{out}", "--sam-checkpoint", c["truncated"]),
        "truncated.pth: not a readable weights-only SAM checkpoint (PytorchStreamReader "
        "failed reading zip archive",
    ),
    "not a SAM checkpoint": (
        lambda b, c, r: predict(AGNET_IMAGE, r["sam"], "{out}", "--sam-checkpoint", c["other"]),
        "other.pth: does not fit SAM tiny:",
    ),
    "checkpoint carrying pickled code": (
        lambda b, c, r: predict(AGNET_IMAGE, r["sam"], "{out}", "--sam-checkpoint", c["pickle"]),
        "pickle.pth: refused, it holds Python objects besides tensors",
    ),
    "adapter.json that disagrees with its weights": (
        lambda b, c, r: predict(
            AGNET_IMAGE, r["relabelled"], "{out}", "--sam-checkpoint", c["sam"]
        ),
        "relabelled/adapter.safetensors: does not fit the model its adapter.json describes",
    ),
    "truncated adapter weights": (
        lambda b, c, r: predict(AGNET_IMAGE, r["truncated"], "{out}"),
        "truncated/adapter.safetensors: damaged adapter weights (incomplete metadata, file not "
        "fully covered)",
    ),
    "adapter weights with an oversized header": (
        lambda b, c, r: predict(AGNET_IMAGE, r["oversized"], "{out}"),
        "oversized/adapter.safetensors: damaged adapter weights (header too large)",
    ),
    "evaluate: truncated adapter weights": (
        lambda b, c, r: ["evaluate", r["store"], "--model", r["truncated"]],
        "truncated/adapter.safetensors: damaged adapter weights",
    ),
    "adapter for another SAM variant": (
        lambda b, c, r: predict(AGNET_IMAGE, r["vit_b"], "{out}", "--sam-checkpoint", c["sam"]),
        "does not fit SAM vit_b",
    ),
    "output is a file": (
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}/earlier/result.txt"),
        "result.txt: exists and is not a folder",
    ),
    "no Dask scheduler at the address": (  # port 9 (discard) is closed on the test machine
        lambda b, c, r: predict(AGNET_IMAGE, r["base"], "{out}", "--dask-address", "127.0.0.1:9"),
        "--dask-address 127.0.0.1:9: no Dask scheduler answers there",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_before_any_work(
    case: str, broken, checkpoints, runs, work: Path
) -> None:
    argv_of, *messages = CASES[case]
    argv = [str(a).format(out=work) for a in argv_of(broken, checkpoints, runs)]
    refused(work, argv, *messages)
    assert not PICKLE_RAN.exists()


def test_a_second_run_writing_the_same_prediction_stops_with_one_line(runs, work: Path) -> None:
    """While one run writes a scene's outputs (its lock held: two deployments of other models
    writing into one folder), another run of that scene into that folder is refused, before any
    work and, should the first start later, when it starts writing."""
    scene = Path(AGNET_IMAGE)
    with exclusive(work / scene.stem, "prediction"):
        refused(work, predict(scene, runs["base"], work), f"{work / scene.stem}: another run is "
                "writing this prediction now; wait for it to finish")  # fmt: skip
        metadata = metadata_for(scene, [1, 2, 3])
        with pytest.raises(InputError, match="another run is writing this prediction now"):
            predict_image(scene, ToyModel(3), metadata, work)
    assert not list(work.glob(f"{scene.stem}_*")) and not list(work.glob(f".{scene.stem}*"))


def test_a_folder_at_an_output_name_is_refused_even_with_overwrite(runs, work: Path) -> None:
    """`--overwrite` replaces files, never a folder: one line before any work (it was three
    attempts and four IsADirectoryError tracebacks)."""
    scene = Path(AGNET_IMAGE)
    (work / f"{scene.stem}_classes.tif").mkdir()
    line = f"{scene.stem}_classes.tif: a folder where an output file goes; move it away"
    refused(work, predict(scene, runs["base"], work, "--overwrite"), line)


def test_a_model_finds_the_sam_checkpoint_it_was_trained_on(
    checkpoints, runs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`predict --model RUN` (or RUN/last) without --sam-checkpoint takes the checkpoint the
    run was trained on, where its config.json says it lies: the outputs those of the command
    that names it."""
    with caplog.at_level(logging.INFO, logger="geo"):  # before a run sets Prefect's logging up
        config = PredictConfig.parse({"images": [str(AGNET_IMAGE)], "model": str(runs["sam"]),
                                      "out": str(tmp_path / "x")})  # fmt: skip
    assert config.sam_checkpoint == str(checkpoints["sam"])
    assert f"SAM checkpoint {checkpoints['sam']}, the one it was trained on" in caplog.text
    scoring = EvaluateConfig.parse({"store": str(runs["store"]), "model": str(runs["sam"])})
    assert scoring.sam_checkpoint == str(checkpoints["sam"])
    outputs = {}
    for name, model, extra in (
        ("given", runs["sam"], ["--sam-checkpoint", checkpoints["sam"]]),
        ("found", runs["sam"], []),
        ("last", runs["sam"] / "last", []),
    ):
        code, err = run_cli(*predict(AGNET_IMAGE, model, tmp_path / name, *extra))
        assert code == 0, err[-3000:]
        outputs[name] = (tmp_path / name / f"{AGNET_IMAGE.stem}_classes.tif").read_bytes()
    assert outputs["found"] == outputs["given"]  # and RUN/last found it too


def test_another_variant_is_named(broken, checkpoints, runs, work: Path) -> None:
    argv = predict(AGNET_IMAGE, runs["vit_b"], work, "--sam-checkpoint", checkpoints["sam"])
    refused(work, argv, "does not fit SAM vit_b", "it looks like a tiny checkpoint")


def test_a_read_only_output_folder_is_refused(runs, readonly: Path) -> None:
    refused(readonly, predict(AGNET_IMAGE, runs["base"], readonly), "is not writable")
    refused(readonly, predict(AGNET_IMAGE, runs["base"], Path("/proc/x")), "/proc is not writable")


def test_ingest_checks_the_model_and_output_first(broken, runs, work: Path) -> None:
    argv = ["ingest", AGNET_IMAGE.parent, "--model", runs["sam_gone"], "--out", work]
    refused(work, argv, "adapter needs the SAM tiny checkpoint")
    argv = ["ingest", "absent_folder", "--model", runs["base"], "--out", work]
    refused(work, argv, "absent_folder: source not found")


INGEST_CASES = {  # extra arguments after `ingest` -> message
    "no source": ([], "give SOURCE (a folder, a scene or a URL) or --stac URL"),
    "a source given as a file pattern": (
        ["{folder}/*.tif"],
        "images/*.tif: give the folder and the file pattern apart: ",
    ),
    "a source and a catalog": (
        ["{folder}", "--stac", "{folder}"],
        "give SOURCE or --stac, not both",
    ),
    "STAC options for a folder": (["{folder}", "--bbox", "1,2,3,4"], "--bbox applies to --stac"),
    "a catalog without a band map": (["--stac", "{folder}"], "--bands is required with --stac"),
    "a bbox that is not one": (
        ["--stac", "{folder}", "--bands", "red", "--bbox", "5,2,3,4"],
        "--bbox 5,2,3,4: give west,south,east,north in degrees",
    ),
    "no catalog there": (["--stac", "absent/catalog.json", "--bands", "red"], "no such catalog"),
    "a band map for other bands": (
        ["--stac", "{folder}", "--bands", "red,green"],
        "--bands red,green: names 2 band(s) for model bands [1, 2], but the model reads bands "
        "[1, 2, 3, 4, 5, 6, 7]",
    ),
    "a time window that ends before it starts": (
        ["--stac", "{folder}", "--bands", "red", "--datetime", "2024-06-30/2024-06-01"],
        "--datetime 2024-06-30/2024-06-01: the window ends before it starts",
    ),
}


@pytest.mark.parametrize("case", INGEST_CASES)
def test_ingest_refuses_sources_it_cannot_use(case: str, runs, work: Path) -> None:
    extra, message = INGEST_CASES[case]
    args = [a.format(folder=AGNET_IMAGE.parent) for a in extra]
    refused(work, ["ingest", *args, "--model", runs["base"], "--out", work], message)


def test_ingest_refuses_a_corrupt_record_saying_how_to_start_over(runs, work: Path) -> None:
    (work / "ingest-record.json").write_text("{not json")
    argv = ["ingest", AGNET_IMAGE.parent, "--model", runs["base"], "--out", work]
    refused(work, argv, "ingest-record.json: unreadable ingest record", "move it away")


def test_a_scene_corrupt_in_the_middle_fails_mid_run_and_leaves_nothing(broken, work: Path) -> None:
    """The pre-flight check passes (both ends of the file read); prediction fails on the
    garbled strip with one line and removes its `.STEM.partial` folder."""
    scene, metadata = broken["corrupt.tif"], metadata_for(SCENE, [1, 2, 3], tile_size=64)
    prepare_scene(str(scene), metadata)
    before = snapshot(work, dirs=False)
    with pytest.raises(InputError, match="corrupt.tif: corrupt or truncated raster") as err:
        predict_image(scene, ToyModel(3), metadata, work)
    assert "\n" not in str(err.value)
    assert snapshot(work, dirs=False) == before
