"""Prediction and ingest from and to s3:// on a real S3-compatible server (moto) on 127.0.0.1:
scenes read in windows, the same files as a local run, outputs uploaded when complete and never
predicted twice; without the cloud extras a URL is refused before any work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from rasterio.windows import Window

from geo.errors import InputError, UnreadableError
from geo.ingest import RECORD_FILE, IngestConfig, predict_options, run_ingest
from geo.ingest.catalog import check_source
from geo.ingest.region import check_region
from geo.io.raster import scene_info
from geo.io.storage import read_json
from geo.predict import PredictConfig, predict
from geo.vectorize import VectorizeConfig, vectorize
from tests.support.cli import NO_SERVER
from tests.support.paths import EXAMPLES, FTW_PREDICTION, NEBRASKA, PIVOT_MASK, ROOT
from tests.support.s3 import S3Server, new_bucket, s3_filesystem, s3_server

OUTPUTS = ("classes", "probability", "polygons", "style")
pytestmark = pytest.mark.slow  # each test predicts or starts an interpreter: 10-20 s


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    name = new_bucket(server, monkeypatch)
    monkeypatch.setenv("CONVLORA_GEO_STAGING", str(tmp_path / "staging"))
    return name


def puts(server: S3Server) -> int:
    return sum(r.method == "PUT" for r in server.requests)


def test_predicting_from_and_to_s3_gives_the_files_of_a_local_run(
    pivots_run: Path, server: S3Server, bucket: str, tmp_path: Path
) -> None:
    s3 = s3_filesystem()
    s3.put_file(str(NEBRASKA), f"{bucket}/scenes/{NEBRASKA.name}")
    scene = f"s3://{bucket}/scenes/{NEBRASKA.name}"
    options = {"model": str(pivots_run), "device": "cpu", "batch_size": 8}
    remote_config = PredictConfig(images=[scene], out=f"s3://{bucket}/out", **options)
    (remote,) = predict(remote_config, progress=False)
    assert remote["classes"] == f"s3://{bucket}/out/nebraska_landsat_albers_30m_classes.tif"
    gets = server.gets(f"/{bucket}/scenes/{NEBRASKA.name}")
    assert gets and all(r.range for r in gets)  # read in windows, never downloaded whole

    local = tmp_path / "here" / NEBRASKA.name
    local.parent.mkdir()
    shutil.copy(NEBRASKA, local)
    (here,) = predict(PredictConfig(images=[str(local)], out=str(tmp_path / "out"), **options))
    for kind in OUTPUTS:
        assert s3.cat_file(remote[kind]) == Path(here[kind]).read_bytes(), kind
    manifest = read_json(remote["manifest"])
    assert manifest["source"] == scene and manifest["inputs"]["image"]["path"] == scene
    assert not [p for p in (tmp_path / "staging").rglob("*") if p.is_file()]  # uploaded, removed

    uploads = puts(server)
    assert predict(remote_config, progress=False) == [remote]  # finished: nothing predicted
    assert puts(server) == uploads
    assert not Path("s3:").exists()


def test_ingest_of_a_bucket_into_itself(pivots_run: Path, bucket: str) -> None:
    s3 = s3_filesystem()
    for path in (NEBRASKA, PIVOT_MASK):
        s3.put_file(str(path), f"{bucket}/inbox/{path.name}")
    inbox = f"s3://{bucket}/inbox"
    values = {"source": inbox, "model": str(pivots_run), "out": inbox, "device": "cpu"}
    ingest = IngestConfig.pick(values)
    first = run_ingest(ingest, predict_options(ingest, values))
    assert list(first.predicted) == [f"{inbox}/{NEBRASKA.name}"]
    assert list(first.refused) == [f"{inbox}/{PIVOT_MASK.name}"]
    assert s3.exists(f"{bucket}/inbox/nebraska_landsat_albers_30m_polygons.gpkg")
    record = json.loads(s3.cat_file(f"{bucket}/inbox/{RECORD_FILE}"))
    (model,) = record["models"].values()
    assert list(model["done"]) == [f"{inbox}/{NEBRASKA.name}"]
    again = run_ingest(ingest, predict_options(ingest, values))
    assert (again.found, again.new) == (2, 0)  # its outputs in the bucket are no scenes


def test_ingest_of_a_prefix_that_holds_nothing_yet(pivots_run: Path, bucket: str) -> None:
    """Object storage has no empty folders: a prefix scenes have not reached yet (a nightly
    ingest before the first delivery, or after a mover emptied it) finds no scene, as an empty
    folder does (it was refused as not found), and predicts the first scene put there; a
    missing bucket is still refused."""
    inbox, out = f"s3://{bucket}/incoming", f"s3://{bucket}/maps"
    values = {"source": inbox, "model": str(pivots_run), "out": out, "device": "cpu"}
    ingest = IngestConfig.pick(values)
    empty = run_ingest(ingest, predict_options(ingest, values))
    assert (empty.found, empty.new) == (0, 0)
    s3_filesystem().put_file(str(NEBRASKA), f"{bucket}/incoming/{NEBRASKA.name}")
    first = run_ingest(ingest, predict_options(ingest, values))
    assert list(first.predicted) == [f"{inbox}/{NEBRASKA.name}"]
    with pytest.raises(InputError, match="bucket or container no-such-bucket not found"):
        check_source("s3://no-such-bucket/incoming")


def test_a_scene_the_store_does_not_serve_for_a_while_is_retried(
    pivots_run: Path, bucket: str, server: S3Server
) -> None:
    """An object the store answers with errors (503) when ingest opens it is failed for this
    run and retried on the next, not refused as a file GDAL cannot read until it changes."""
    s3 = s3_filesystem()
    for path in (NEBRASKA, PIVOT_MASK):
        s3.put_file(str(path), f"{bucket}/inbox/{path.name}")
    inbox, scene = f"s3://{bucket}/inbox", f"s3://{bucket}/inbox/{NEBRASKA.name}"
    values = {"source": inbox, "model": str(pivots_run), "out": inbox, "device": "cpu"}
    ingest = IngestConfig.pick(values)
    server.fail.add(f"/{bucket}/inbox/{NEBRASKA.name}")
    try:
        with pytest.raises(InputError, match="none of the 2 new scene"):
            run_ingest(ingest, predict_options(ingest, values))
    finally:
        server.fail.clear()
    record = json.loads(s3.cat_file(f"{bucket}/inbox/{RECORD_FILE}"))
    (model,) = record["models"].values()
    assert model["failed"][scene]["reason"].startswith(f"RemoteReadError: {scene}: could not be")
    assert list(model["skipped"]) == [f"{inbox}/{PIVOT_MASK.name}"]  # one band: not retried
    again = run_ingest(ingest, predict_options(ingest, values))
    assert list(again.predicted) == [scene]


def test_a_scene_gone_from_the_bucket_is_not_found(bucket: str) -> None:
    """An object listed, then deleted before it is opened, is missing, not a file that is no
    raster; one the store serves but GDAL cannot read is no raster."""
    with pytest.raises(InputError, match=r"^s3://.*/gone\.tif: not found$"):
        scene_info(f"s3://{bucket}/gone.tif")
    s3_filesystem().pipe_file(f"{bucket}/notes.tif", b"field notes, not a raster")
    with pytest.raises(UnreadableError, match=r"notes\.tif: not a raster GDAL can read"):
        scene_info(f"s3://{bucket}/notes.tif")


def cli_without_cloud_extras(commands: list[list[str]], cwd: Path) -> list[tuple[int, str]]:
    """Run `convlora-geo` COMMANDS in one new interpreter where s3fs cannot be imported (as
    without `convlora-geo[cloud]`) and no Prefect server is there to start a flow on; each one's
    exit status and what it wrote to stderr."""
    code = (
        "import contextlib, io, json, sys\n"
        "sys.modules['s3fs'] = None\n"
        "from flows.cli import main\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        status = main(argv)\n"
        "    print(json.dumps([status, err.getvalue()]))\n"
    )
    path = os.pathsep.join([str(ROOT), str(ROOT / "convlora" / "src")])
    env = {**os.environ, "PYTHONPATH": path, "PREFECT_API_URL": NO_SERVER}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(commands)], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [tuple(json.loads(line)) for line in done.stdout.splitlines()]


def test_without_the_cloud_extras_a_url_is_refused_up_front(
    pivots_run: Path, bucket: str, tmp_path: Path
) -> None:
    model = ["--model", str(pivots_run), "--device", "cpu"]
    cases = [  # argv, the URL refused
        (["predict", str(NEBRASKA), "--out", f"s3://{bucket}/out"], f"s3://{bucket}/out"),
        (["predict", f"s3://{bucket}/s.tif", "--out", "out"], f"s3://{bucket}/s.tif"),
        (["ingest", f"s3://{bucket}/inbox", "--out", "out"], f"s3://{bucket}/inbox"),
    ]
    results = cli_without_cloud_extras([argv + model for argv, _ in cases], tmp_path)
    for (argv, url), (status, err) in zip(cases, results, strict=True):
        assert status == 2, err[-3000:]
        assert err.strip() == (
            f"convlora-geo {argv[0]}: error: {url}: s3:// needs the cloud extras: "
            "pip install 'convlora-geo[cloud]'"
        )
    assert not any(tmp_path.iterdir())  # no local folder named s3:, no output folder


def test_a_pattern_of_scenes_in_a_bucket_is_expanded(pivots_run: Path, bucket: str) -> None:
    """`s3://bucket/2024-*/*.tif` (a Prefect parameter, no shell to expand it): the objects it
    matches, in name order; one that matches nothing is refused naming the pattern."""
    s3 = s3_filesystem()
    for key in ("2024-05/b.tif", "2024-05/a.tif", "2024-06/c.tif", "2023-01/d.tif"):
        s3.put_file(str(NEBRASKA), f"{bucket}/{key}")
    options = {"model": str(pivots_run), "out": f"s3://{bucket}/out", "device": "cpu"}
    config = PredictConfig(images=[f"s3://{bucket}/2024-*/*.tif"], **options)
    assert config.images == [f"s3://{bucket}/2024-05/a.tif", f"s3://{bucket}/2024-05/b.tif",
                             f"s3://{bucket}/2024-06/c.tif"]  # fmt: skip
    with pytest.raises(ValueError, match="no file matches this pattern"):
        PredictConfig(images=[f"s3://{bucket}/2025-*/*.tif"], **options)


def test_class_rasters_in_a_bucket_vectorise_as_one_mosaic(bucket: str, tmp_path: Path) -> None:
    """`vectorize 's3://bucket/predictions/*_classes.tif'`: the parts of the real FTW prediction
    read from the bucket in windows give the polygons of the whole, as on disk."""
    s3 = s3_filesystem()
    with rasterio.open(FTW_PREDICTION) as src:
        for name, window in (("west", Window(0, 0, 160, 189)), ("east", Window(130, 0, 159, 189))):
            part = tmp_path / f"{name}_classes.tif"
            meta = {**src.profile, "width": window.width, "transform": src.window_transform(window)}
            with rasterio.open(part, "w", **meta) as dst:
                dst.write(src.read(1, window=window), 1)
            s3.put_file(str(part), f"{bucket}/predictions/{part.name}")
    class_map = str(EXAMPLES / "ftw_classes.yaml")
    for rasters, out in (([f"s3://{bucket}/predictions/*_classes.tif"], "bucket.gpkg"),
                         ([str(FTW_PREDICTION)], "whole.gpkg")):  # fmt: skip
        vectorize(VectorizeConfig(rasters=rasters, class_map=class_map, out=str(tmp_path / out)))
    mosaic = gpd.read_file(tmp_path / "bucket.gpkg", layer="polygons").sort_values("id")
    whole = gpd.read_file(tmp_path / "whole.gpkg", layer="polygons").sort_values("id")
    assert list(mosaic.id) == list(whole.id) and len(whole) > 200
    assert set(mosaic.source) == {"west_classes.tif", "east_classes.tif"}


def test_the_region_layer_of_an_ingest_into_a_bucket(
    pivots_run: Path, bucket: str, server: S3Server, tmp_path: Path
) -> None:
    """`ingest --out s3://... --region s3://.../region.gpkg`: the scenes' class rasters are read
    from the bucket and the layer uploaded once written (a local --region too); an upload the
    store refuses leaves the layer to the next run; a run with nothing new leaves the object as
    it is."""
    s3 = s3_filesystem()
    for name, cols in (("west", (0, 280)), ("east", (256, 512))):
        part = tmp_path / f"{name}.tif"
        with rasterio.open(NEBRASKA) as src:
            window = Window(cols[0], 0, cols[1] - cols[0], src.height)
            meta = {**src.profile, "width": window.width, "transform": src.window_transform(window)}
            with rasterio.open(part, "w", **meta) as dst:
                dst.write(src.read(window=window))
        s3.put_file(str(part), f"{bucket}/inbox/{part.name}")
    out, region = f"s3://{bucket}/out", f"s3://{bucket}/layers/region.gpkg"
    values = {"source": f"s3://{bucket}/inbox", "model": str(pivots_run), "out": out,
              "device": "cpu", "region": region}  # fmt: skip
    ingest = IngestConfig.pick(values)
    server.fail_writes.add(f"/{bucket}/layers/")
    try:
        first = run_ingest(ingest, predict_options(ingest, values))
    finally:
        server.fail_writes.clear()
    assert len(first.predicted) == 2 and first.region
    assert first.region.startswith("not rewritten: ") and not s3.exists(f"{bucket}/layers")
    second = run_ingest(ingest, predict_options(ingest, values))  # nothing new; no layer yet
    assert second.new == 0 and second.region
    assert second.region.endswith(f"polygons of 2 scene(s) in {region}")
    layer = tmp_path / "region.gpkg"
    s3.get_file(f"{bucket}/layers/region.gpkg", str(layer))
    together = tmp_path / "together.gpkg"
    vectorize(VectorizeConfig(rasters=[f"{out}/*_classes.tif"], out=str(together)))
    polygons = gpd.read_file(layer, layer="polygons")
    assert len(polygons) == len(gpd.read_file(together, layer="polygons")) > 0
    assert set(polygons.source) <= {"west_classes.tif", "east_classes.tif"}
    stamp = s3.info(f"{bucket}/layers/region.gpkg")["ETag"]
    again = run_ingest(ingest, predict_options(ingest, values))
    assert again.new == 0 and again.region is None
    assert s3.info(f"{bucket}/layers/region.gpkg")["ETag"] == stamp

    local = {**values, "region": str(tmp_path / "here.gpkg")}
    ingest = IngestConfig.pick(local)
    third = run_ingest(ingest, predict_options(ingest, local))  # no file: written, nothing new
    assert third.new == 0 and third.region
    assert third.region.endswith(f"polygons of 2 scene(s) in {local['region']}")
    assert len(gpd.read_file(local["region"], layer="polygons")) == len(polygons)
    refusals = {
        out: "out: is a folder; give a file name",
        "s3://no-such-bucket/region.gpkg": "bucket or container no-such-bucket not found",
        f"s3://{bucket}/layers/region.txt": "give a file name ending in .gpkg",
    }
    for bad, message in refusals.items():
        with pytest.raises(InputError, match=message):
            check_region(bad)
