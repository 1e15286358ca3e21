"""Each flow on bundled data under a Prefect test server: tile, finetune, predict, ingest, Dask."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import zarr

from geo.contracts import AdapterMetadata, StoreInfo
from geo.ingest.run import SETTLING_S
from geo.predict import output_paths
from tests.support.cli import snapshot
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, PIVOTS, SCENE
from tests.support.stores import OLD_SPLIT, as_tiled_by_another_version, tile
from tests.support.vrt import rewrite_upside_down, vrt_over_copy

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


TILING = {
    "images": [str(SCENE)],
    "labels": [str(PIVOT_LABELS)],
    "class_map": str(PIVOT_CLASSES),
    "tile_size": 128,
    "overlap": 32,
    "val_fraction": 0.25,
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tile_flow_tiles_a_vrt_again_when_its_source_changed(
    prefect_server, tmp_path: Path
) -> None:
    """The tile task's cache key covers a VRT's source files, not only the VRT's text: a run
    cached on an unchanged store does not answer for a changed source (every run with
    overwrite, as a script that always passes it would run them)."""
    from flows.tile import tile_flow

    source, vrt = vrt_over_copy(tmp_path)
    params = {
        **TILING,
        "images": [str(vrt)],
        "out": str(tmp_path / "store.zarr"),
        "overwrite": True,
    }
    store = Path(tile_flow(**params))
    first = StoreInfo.read(store).fingerprint
    assert Path(tile_flow(**params)) == store  # reused, and cached
    pixels = rewrite_upside_down(source)
    assert Path(tile_flow(**params)) == store
    assert StoreInfo.read(store).fingerprint != first
    images = zarr.open_group(str(store), mode="r")["images"]
    assert np.array_equal(images[0], pixels[:, :128, :128])


@pytest.fixture(scope="module")
def trained_run(prefect_server, tmp_path_factory) -> tuple[Path, Path]:
    """Tile and fine-tune the tiny SAM for two steps through the finetune flow."""
    from flows.finetune import finetune_flow

    work = tmp_path_factory.mktemp("finetune")
    metrics = finetune_flow(
        **TILING, store=str(work / "pivots.zarr"), out=str(work / "run"), sam="tiny",
        adapter="full", image_size=64, steps=2, batch_size=2, accumulate=1, device="cpu",
    )  # fmt: skip
    store = StoreInfo.read(work / "pivots.zarr")
    assert metrics["split"] == "val" and metrics["tiles"] == store.split_counts["val"] > 0
    assert set(metrics["per_class_iou"]) == {"background", "pivot"}
    return work / "pivots.zarr", work / "run"


def test_tile_flow_writes_store_and_reuses_it(prefect_server, tmp_path: Path) -> None:
    from flows.tile import tile_flow

    params = {**TILING, "out": str(tmp_path / "store.zarr")}
    store = Path(tile_flow(**params))
    index = gpd.read_file(store / "tile_index.gpkg", layer="tiles")
    with rasterio.open(PIVOTS / "nebraska_landsat_albers_30m.tif") as src:
        assert index.crs == src.crs
    stamp = (store / "zarr.json").stat().st_mtime_ns
    assert Path(tile_flow(**params)) == store
    assert (store / "zarr.json").stat().st_mtime_ns == stamp


def test_finetune_flow_writes_adapter_and_metrics(trained_run) -> None:
    store, run = trained_run
    adapter = AdapterMetadata.read(run)
    assert adapter.store_fingerprint == StoreInfo.read(store).fingerprint
    assert adapter.model.sam_variant == "tiny" and adapter.model.image_size == 64
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["steps"] == 2 and config["total_steps"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 2 and records[-1]["kind"] == "epoch"


def test_finetune_flow_after_an_upgrade_keeps_the_store_and_its_run(
    prefect_server, tmp_path: Path
) -> None:
    """A store an older convlora-geo tiled, and a run trained on it: the same finetune run
    again (a deployment's next run after an upgrade) keeps the store as it is and finds the run
    trained on it (the store was refused: "already holds a tile store of other inputs or
    settings")."""
    from flows.finetune import finetune_flow

    params = {
        **TILING, "store": str(tmp_path / "pivots.zarr"), "out": str(tmp_path / "run"),
        "image_size": 64, "steps": 2, "batch_size": 2, "accumulate": 1, "device": "cpu",
    }  # fmt: skip
    tile([SCENE], [PIVOT_LABELS], PIVOT_CLASSES, params["store"], tile_size=128, overlap=32,
         val_fraction=0.25)  # fmt: skip
    old = as_tiled_by_another_version(Path(params["store"]), split=OLD_SPLIT)
    finetune_flow(**params)
    before = snapshot(Path(params["store"]))
    assert finetune_flow(**params)["split"] == "val"
    assert snapshot(Path(params["store"])) == before
    assert AdapterMetadata.read(tmp_path / "run").store_fingerprint == old


def test_finetune_summary_gives_the_iou_of_each_class(trained_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.commands.tile import store_lines
    from geo.evaluate import EvaluateConfig, evaluate_on_store

    store, run = trained_run
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["finetune-summary"]))
        )
    [summary] = [a.data for a in artifacts if f"run: `{run}`" in str(a.data)]
    config = EvaluateConfig(store=str(store), model=str(run), split="val", device="cpu")
    metrics = evaluate_on_store(config)
    iou = metrics["per_class_iou"]
    expected = f"(IoU per class: background {iou['background']:.2f}, pivot {iou['pivot']:.2f})"
    assert f"validation mIoU: {metrics['miou']:.4f} {expected}" in summary
    tiles, labelled = (line.strip() for line in store_lines(str(store)))  # what the store holds
    assert f"- tile store: `{store}`\n- {tiles}\n- {labelled}\n- steps: 2\n" in summary


def test_predict_then_ingest_is_idempotent(trained_run, tmp_path: Path) -> None:
    """Ingest twice, then with a new scene and one that is corrupt in its middle (it passes the
    check and fails while predicted, on the Dask workers): the good one is predicted, the other
    skipped until it changes, and the run completes."""
    from flows.ingest import ingest_flow
    from tests.support.cli import make_broken

    _, run = trained_run
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(PIVOTS / "nebraska_landsat_albers_30m.tif", inbox / "scene_a.tif")
    params = {
        "source": str(inbox), "model": str(run), "out": str(tmp_path / "out"), "device": "cpu",
        "batch_size": 8,
    }  # fmt: skip
    first = ingest_flow(**params)
    assert list(first["predicted"]) == [str(inbox / "scene_a.tif")]
    classes = tmp_path / "out" / "scene_a_classes.tif"
    with rasterio.open(classes) as dst, rasterio.open(inbox / "scene_a.tif") as src:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
    before = digest(classes)
    assert ingest_flow(**params)["predicted"] == {}
    assert digest(classes) == before

    shutil.copy(make_broken(tmp_path)["corrupt.tif"], inbox / "scene_b.tif")
    long_ago = time.time() - 2 * SETTLING_S  # not a file still being copied in
    os.utime(inbox / "scene_b.tif", (long_ago, long_ago))
    shutil.copy(PIVOTS / "nebraska_landsat_albers_30m.tif", inbox / "scene_c.tif")
    third = ingest_flow(**params)
    assert list(third["predicted"]) == [str(inbox / "scene_c.tif")]
    reason = third["refused"][str(inbox / "scene_b.tif")]
    assert "scene_b.tif: corrupt or truncated raster" in reason
    assert not (tmp_path / "out" / ".scene_b.partial").exists()
    assert (ingest_flow(**params)["new"], digest(classes)) == (0, before)


def test_predict_on_dask_cluster_equals_default_runner(trained_run, tmp_path: Path) -> None:
    from distributed import LocalCluster

    from flows.predict import predict_flow

    _, run = trained_run
    scenes = []
    for name in ("a", "b"):
        scenes.append(tmp_path / f"scene_{name}.tif")
        shutil.copy(PIVOTS / "nebraska_landsat_albers_30m.tif", scenes[-1])
    common = dict(images=[str(s) for s in scenes], model=str(run), device="cpu", batch_size=8)
    default = predict_flow(out=str(tmp_path / "default"), **common)
    from flows.runtime import LOCAL_SCHEDULER_HTTP

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs=LOCAL_SCHEDULER_HTTP,
    ) as cluster:
        on_dask = predict_flow(
            out=str(tmp_path / "dask"), dask_address=cluster.scheduler_address, **common
        )
    for a, b in zip(default, on_dask, strict=True):
        for key in ("classes", "probability"):
            assert digest(Path(a[key])) == digest(Path(b[key])), key


def test_a_run_of_several_scenes_is_quiet_when_another_dask_cluster_holds_port_8787(
    trained_run, tmp_path: Path
) -> None:
    """Dask's local scheduler took port 8787 even with its dashboard off, and printed a
    four-line warning when another cluster (a second run, a notebook) held it."""
    from prefect.settings import PREFECT_API_URL

    from tests.support.cli import cli_process

    _, run = trained_run
    scenes = [shutil.copy(SCENE, tmp_path / f"{name}.tif") for name in ("a", "b")]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # held already: the case under test
            holder.bind(("127.0.0.1", 8787))
            holder.listen()
        done = cli_process(
            "predict",
            *scenes,
            "--model",
            run,
            "--out",
            tmp_path / "out",
            "--device",
            "cpu",
            env=env,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "items on a local Dask cluster" in done.stderr
    assert "8787" not in done.stderr and "UserWarning" not in done.stderr, done.stderr[-3000:]
    assert all((tmp_path / "out" / f"{name}_classes.tif").exists() for name in ("a", "b"))
    # the workers' lines look like the command's own (not Prefect's "12:00:00.123 | INFO | ...")
    for scene in scenes:
        pattern = rf"^\d\d:\d\d:\d\d INFO prefect\.task_runs: predicting {re.escape(str(scene))}$"
        assert re.search(pattern, done.stderr, re.MULTILINE), done.stderr[-3000:]


def test_a_stac_api_that_does_not_answer_is_one_line_and_status_1(
    trained_run, tmp_path: Path
) -> None:
    """Nothing listens at the URL: not bad input (status 1, a later run may succeed), and not a
    traceback (pystac-client's APIError reached the command before)."""
    from tests.support.cli import run_cli

    _, run = trained_run
    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/stac"
    code, err = run_cli(
        "ingest", "--stac", url, "--collection", "sentinel-2-l2a", "--bands", "red,green,blue",
        "--model", run, "--out", tmp_path / "out", "--device", "cpu",
    )  # fmt: skip
    line = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert line.startswith(f"convlora-geo ingest: error: --stac {url}: unavailable (")
    assert "Connection refused" in line and line.endswith("; a later run may succeed")


def test_dask_workers_get_the_api_url_key_and_auth_string(prefect_server) -> None:
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_KEY,
        PREFECT_API_URL,
        temporary_settings,
    )

    from flows.runtime import worker_prefect_env

    assert worker_prefect_env() == {"PREFECT_API_URL": PREFECT_API_URL.value().rstrip("/")}
    with temporary_settings({PREFECT_API_KEY: "pnu_example"}):
        assert worker_prefect_env()["PREFECT_API_KEY"] == "pnu_example"
    with temporary_settings({PREFECT_API_AUTH_STRING: "admin:secret"}):
        assert worker_prefect_env()["PREFECT_API_AUTH_STRING"] == "admin:secret"


def test_predict_command_from_and_to_s3(
    trained_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI and the flow (its polygon table reads the GeoPackage in the bucket):
    outputs land in the bucket, nothing in a local folder named after the URL."""
    from tests.support.cli import run_cli
    from tests.support.s3 import new_bucket, s3_filesystem, s3_server

    _, run = trained_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVLORA_GEO_STAGING", str(tmp_path / "staging"))
    with s3_server() as server:
        bucket = new_bucket(server, monkeypatch)
        s3 = s3_filesystem()
        s3.put_file(str(PIVOTS / "nebraska_landsat_albers_30m.tif"), f"{bucket}/in/scene.tif")
        code, err = run_cli(
            "predict", f"s3://{bucket}/in/scene.tif", "--out", f"s3://{bucket}/out",
            "--model", run, "--device", "cpu",
        )  # fmt: skip
        assert code == 0, err[-3000:]
        names = sorted(Path(p).name for p in s3.ls(f"{bucket}/out"))
    assert names == sorted(p.name for p in output_paths(".", "scene").values())
    assert "scene_quicklook.png" in names and "scene_polygons.parquet" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # staging emptied and removed


def test_the_ingest_summary_says_how_much_of_a_scene_is_no_data(tmp_path: Path) -> None:
    """A scene predicted in part (clouds masked, or cut by the area) says so in the run's
    summary artifact, from its manifest; a whole one, or one without a manifest, does not; one
    with nothing to predict (all cloud) has a row saying so; scenes kept as predicted before
    with other options are a warning."""
    from flows.ingest import summary
    from geo.ingest.run import IngestResult

    predicted = {}
    for name, share in (("cloudy", 62.4), ("clear", 100.0), ("older", None)):
        manifest = tmp_path / f"{name}_manifest.json"
        if share is not None:
            manifest.write_text(json.dumps({"predicted_percent": share}))
        predicted[name] = {"classes": f"{name}_classes.tif", "manifest": str(manifest)}
    (tmp_path / "unread").mkdir()  # a manifest the store cannot read (OSError): no share shown
    predicted["unread"] = {"classes": "unread_classes.tif", "manifest": str(tmp_path / "unread")}
    empty = {"overcast": "overcast: no clear pixel over the area (clouds, ...)"}
    kept = "1 scene(s) predicted before with other options (--min-area 500, now 900) are kept"
    text = summary(
        IngestResult("inbox", str(tmp_path), 5, 5, predicted, {}, {}, {}, None, empty, kept)
    )
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if "| `" in line}
    assert "(37.6 % no data: clouds, or outside the scene or the area)" in rows["cloudy"]
    assert "no data" not in rows["clear"] and "no data" not in rows["older"]
    assert rows["overcast"] == (
        "| `overcast` | nothing to predict | overcast: no clear pixel over the area (clouds, ...) |"
    )
    assert rows["unread"] == "| `unread` | predicted | `unread_classes.tif` |"
    assert "4 predicted, 0 skipped, 0 failed (retried next run), 1 with nothing to predict" in text
    assert f"- **Warning:** {kept}\n" in text
