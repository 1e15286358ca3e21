"""Failures that only show once a flow runs, through the CLI under a Prefect test server: a
scene corrupt in its middle, a disk that fills up, label values in no class. Failed flows end
Failed with the error line as their message, and their tasks are not retried."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

from tests.bad_inputs.test_faults import ctrl_c, mosaic_scene
from tests.support.cli import make_broken, make_work, mount_tmpfs, run_cli, snapshot, train
from tests.support.paths import AGNET_IMAGE, PIVOT_CLASSES, PIVOT_LABELS, SCENE
from tests.support.stores import small_agnet_store

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_broken(tmp_path_factory.mktemp("broken"))


def last_flow_run(name: str) -> tuple[object, list]:
    """The latest run of flow `name` and its task runs, from the Prefect API."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    return run, tasks


def assert_failed_once(flow: str, line: str) -> None:
    """The flow run is Failed with the error in its message; no task ran more than once."""
    run, tasks = last_flow_run(flow)
    assert run.state.is_failed(), run.state
    assert line.split(": error: ", 1)[1] in " ".join(run.state.message.split())
    assert tasks and all(t.run_count <= 1 for t in tasks), [(t.name, t.run_count) for t in tasks]


def test_a_scene_corrupt_in_its_middle_fails_once_and_leaves_nothing(
    prefect_server, broken, tmp_path: Path
) -> None:
    work = make_work(tmp_path / "work")
    before = snapshot(work, dirs=False)
    argv = ["tile", broken["corrupt.tif"], "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES,
            "--out", work / "s.zarr", "--tile-size", "128", "--overlap", "32"]  # fmt: skip
    code, err = run_cli(*argv)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("convlora-geo tile: error: "), err[-3000:]
    assert "corrupt.tif: corrupt or truncated raster" in line
    assert snapshot(work, dirs=False) == before
    assert_failed_once("tile", line)


def test_label_values_in_no_class_warn_then_tile(
    prefect_server, broken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["tile", SCENE, "--labels", PIVOT_LABELS, "--class-map", broken["one_id.yaml"],
            "--label-field", "id", "--out", tmp_path / "s.zarr", "--tile-size", "128",
            "--overlap", "32"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geo"):
        code, err = run_cli(*argv)
    assert code == 0, err[-3000:]
    assert "id value(s)" in caplog.text and "are in no class: they become ignore" in caplog.text
    assert (tmp_path / "s.zarr" / "tile_index.gpkg").exists()


def test_a_full_disk_fails_once_and_keeps_the_earlier_outputs(
    prefect_server, tmp_path: Path
) -> None:
    """Predict into a 1 MiB tmpfs, fill it, predict again with other settings: one line, exit
    status 2, no partial folder, and the earlier outputs unchanged."""
    store = small_agnet_store(tmp_path / "agnet.zarr", range(0, 25), 1)
    run = train(store, tmp_path / "run")
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    try:
        argv = ["predict", AGNET_IMAGE, "--model", run, "--out", disk, "--device", "cpu"]
        code, err = run_cli(*argv, "--min-area", "0")
        assert code == 0, err[-3000:]
        stat = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 24 * 1024))
        before = snapshot(disk, dirs=False)
        code, err = run_cli(*argv, "--min-area", "1000")
        line = err.strip().splitlines()[-1]
        assert code == 2 and line.startswith("convlora-geo predict: error: "), err[-3000:]
        assert f"{disk}: no space left on device" in line
        assert snapshot(disk, dirs=False) == before
        assert_failed_once("predict", line)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_run_stopped_by_ctrl_c_is_cancelled_on_the_configured_server(
    prefect_server, tmp_path: Path
) -> None:
    """`tile` reporting to a configured Prefect server, stopped by Ctrl-C while it writes tile
    blocks: it still stops at once (status 130, the one line), and its flow run is Cancelled
    there with that line as its message (it showed "Running" for ever)."""
    from prefect.settings import PREFECT_API_URL

    scene = tmp_path / "mosaic.tif"
    mosaic_scene(scene, 6)
    argv = ["tile", scene, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES, "--out",
            tmp_path / "s.zarr", "--tile-size", "128", "--overlap", "32"]  # fmt: skip
    blocks = lambda _: bool(list(tmp_path.glob(".s.zarr.partial-*/_progress/block-*.json")))  # noqa: E731
    status, text, stopped = ctrl_c(argv, tmp_path, blocks, "tile block", PREFECT_API_URL.value())
    assert status == 130 and stopped < 10, (status, stopped, text[-3000:])
    assert "temporary Prefect server" not in text, text[-3000:]
    run, _ = last_flow_run("tile")
    assert run.state.is_cancelled(), run.state
    assert run.state.message == (
        "interrupted (Ctrl-C) on the command line; run the same command again to resume"
    )
