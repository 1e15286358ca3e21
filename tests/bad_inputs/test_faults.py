"""Faults of the machine rather than the input, through the real command line in a process of
its own: Ctrl-C in a terminal (SIGINT to the whole process group, Prefect's temporary server
included) and memory running out."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
import zarr

from flows.cli import OUT_OF_MEMORY, stop_local_dask_restarts
from flows.runtime import LOCAL_SCHEDULER_HTTP
from tests.support.cli import run_cli, snapshot, train
from tests.support.paths import FTW_PREDICTION, NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS, ROOT
from tests.support.stores import tile

pytestmark = pytest.mark.slow

INTERRUPTED = "convlora-geo tile: interrupted; run the same command again to resume"
UNDER_LIMIT = """
import resource, sys
import convlora.train, flows.cli, geo.finetune  # what the command imports, before the limit
import torch._dynamo  # imported by AdamW's first use; under the limit its import can fail first
size = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize"))
limit = size * 1024 + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
sys.exit(flows.cli.main(sys.argv[2:]))
"""


def mosaic_scene(path: Path, copies: int) -> np.ndarray:
    """The Nebraska scene repeated `copies` x `copies` times on its own grid (the pivots label
    the first copy); returns the pixels."""
    with rasterio.open(NEBRASKA) as src:
        profile, pixels = src.profile, np.tile(src.read(), (1, copies, copies))
    profile.update(width=pixels.shape[2], height=pixels.shape[1], tiled=True, blockxsize=256,
                   blockysize=256)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return pixels


def group_alive(pgid: int) -> list[psutil.Process]:
    """The processes of a process group that are still running (zombies are done)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)


def start_command(
    argv: list[object], folder: Path, api_url: str | None = None
) -> tuple[subprocess.Popen, Path]:
    """`convlora-geo ARGV` started in a session of its own, reporting to the Prefect API at
    `api_url`, else to a temporary Prefect server of its own (in `folder`); its output goes to
    the file returned."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env["PREFECT_HOME"] = str(folder / "prefect")
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    log = folder / "output.txt"
    with log.open("w") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *map(str, argv)], stdout=output, stderr=output,
            stdin=subprocess.DEVNULL, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    return proc, log


def ctrl_c(
    argv: list[object],
    folder: Path,
    ready: Callable[[str], bool],
    what: str,
    api_url: str | None = None,
    sigterm: bool = False,
) -> tuple[int, str, float]:
    """Run `convlora-geo ARGV` in a session of its own, reporting to the Prefect API at
    `api_url`, else to a temporary Prefect server of its own (in `folder`), and once `ready(its
    output so far)` holds, send SIGINT to the whole process group as Ctrl-C in a terminal does
    (`sigterm`: SIGTERM to the command alone, as `timeout` and `docker stop` do). Returns (exit
    status, output, seconds from the signal to the exit), once no process of the group is left
    (within a second of the exit)."""
    proc, log = start_command(argv, folder, api_url)
    try:
        wait_for(lambda: ready(log.read_text()) or proc.poll() is not None, 600, what)
        assert proc.poll() is None, log.read_text()[-3000:]
        started = time.monotonic()
        if sigterm:
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        stopped = time.monotonic() - started
        # at most a second: a process the command leaves running (a worker a Dask nanny
        # restarted while the command stopped) would print tracebacks after it
        wait_for(lambda: not group_alive(proc.pid), 1, "end of the process group with the command")
    finally:
        for leftover in group_alive(proc.pid):
            leftover.kill()
    return proc.returncode, log.read_text(), stopped


def test_ctrl_c_stops_at_once_and_the_same_command_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`tile` of a 3072 px scene under Prefect's temporary server: SIGINT to the process group
    once tile blocks are being written stops it within 10 s with status 130 and one line, no
    traceback, no process of the group left, nothing under the store's name; the same tiling
    then resumes the finished blocks and completes the store."""
    scene = tmp_path / "mosaic.tif"
    pixels = mosaic_scene(scene, 6)
    out = tmp_path / "s.zarr"
    argv = ["tile", scene, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES, "--out", out,
            "--tile-size", "128", "--overlap", "32"]  # fmt: skip
    blocks = lambda _: bool(list(tmp_path.glob(".s.zarr.partial-*/_progress/block-*.json")))  # noqa: E731
    status, text, stopped = ctrl_c(argv, tmp_path, blocks, "tile block")
    assert status == 130 and stopped < 10, (status, stopped, text[-3000:])
    assert "Beginning flow run" in text
    assert "Traceback" not in text and text.strip().splitlines()[-1] == INTERRUPTED, text[-3000:]
    assert [line for line in text.splitlines() if "convlora-geo tile:" in line] == [INTERRUPTED]
    assert not out.exists()
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile([scene], [PIVOT_LABELS], PIVOT_CLASSES, out, tile_size=128, overlap=32)
    assert "tile blocks already done" in caplog.text
    group = zarr.open_group(str(store), mode="r")
    assert group["valid"][:].all()  # every tile written
    for image, (col, row, w, h) in zip(group["images"], group["window"][:], strict=True):
        assert np.array_equal(image, pixels[:, row : row + h, col : col + w])


def test_ctrl_c_during_a_run_of_several_scenes_leaves_nothing_running_and_says_one_line(
    tmp_path: Path,
) -> None:
    """`predict` of two scenes runs them on a local Dask cluster of two processes: SIGINT to the
    process group while both are predicted stops it with status 130 and the one line, no
    process of the group left, and the cluster's nanny does not announce restarting the workers
    the command stops (it did, twice, after the line)."""
    store = tile([NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "s.zarr", tile_size=128,
                 overlap=32, val_fraction=0.25)  # fmt: skip
    run = train(store, tmp_path / "run")
    scenes = [tmp_path / "a.tif", tmp_path / "b.tif"]
    mosaic_scene(scenes[0], 8)
    scenes[1].write_bytes(scenes[0].read_bytes())
    argv = ["predict", *scenes, "--model", run, "--out", tmp_path / "out"]
    both = lambda text: all(f"predicting {s}" in text for s in scenes)  # noqa: E731
    status, text, _ = ctrl_c(argv, tmp_path, both, "prediction of both scenes")
    assert status == 130, text[-3000:]
    # the line once (a worker process may still log a task it lost, after it), no restarts
    line = "convlora-geo predict: interrupted; run the same command again to resume"
    assert text.strip().splitlines().count(line) == 1, text[-3000:]
    assert "Traceback" not in text and "Restarting worker" not in text, text[-3000:]


def test_sigterm_stops_a_prediction_at_once_and_the_same_command_resumes(tmp_path: Path) -> None:
    """SIGTERM to `predict` alone (`timeout`, `docker stop`, Kubernetes) while it predicts a
    3072 px scene under Prefect's temporary server: it stops within 10 s with status 143 and one
    line, no traceback, no process of the group left (it predicted the whole scene first, then
    waited minutes for the server it had lost, and printed a 224-line traceback); the same
    command resumes where it stopped."""
    store = tile([NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "s.zarr", tile_size=128,
                 overlap=32, val_fraction=0.25)  # fmt: skip
    run = train(store, tmp_path / "run")
    scene = tmp_path / "mosaic.tif"
    mosaic_scene(scene, 6)
    argv = ["predict", scene, "--model", run, "--out", tmp_path / "out"]
    rows = lambda text: "predicting" in text and (tmp_path / "out" / ".mosaic.partial").exists()  # noqa: E731
    status, text, stopped = ctrl_c(argv, tmp_path, rows, "rows predicted", sigterm=True)
    line = "convlora-geo predict: terminated (SIGTERM); run the same command again to resume"
    assert status == 143 and stopped < 10, (status, stopped, text[-3000:])
    assert "Traceback" not in text and text.strip().splitlines()[-1] == line, text[-3000:]
    proc, log = start_command(argv, tmp_path)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "mosaic: resuming where an interrupted run stopped" in text
    # how far it is, where no terminal shows a bar (the prediction was silent for minutes)
    assert re.search(r"mosaic: (\d+)/\1 windows \(", text), text[-3000:]
    assert "vectorising mosaic.tif: 3072/3072 rows (" in text, text[-3000:]


@pytest.mark.parametrize("sigterm", [False, True], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_during_vectorize_leaves_no_temporary_file_and_promises_no_resume(
    tmp_path: Path, sigterm: bool
) -> None:
    """SIGINT (or SIGTERM) while `vectorize` writes its GeoPackage (the FTW model's field
    classes repeated 24 x 24 times): status 130 (143), a line saying nothing was written
    (nothing resumes it), and neither the output nor its temporary file left (the empty lock
    file stays, released; SIGTERM left a 56 MB temporary file and no word)."""
    with rasterio.open(FTW_PREDICTION) as src:
        profile, pixels = src.profile, np.tile(src.read(), (1, 24, 24))
    profile.update(width=pixels.shape[2], height=pixels.shape[1], tiled=True, blockxsize=256,
                   blockysize=256)  # fmt: skip
    raster = tmp_path / "classes.tif"
    with rasterio.open(raster, "w", **profile) as dst:
        dst.write(pixels)
    out = tmp_path / "out"
    writing = lambda _: bool(list(out.glob(".fields.gpkg.*.tmp.gpkg")))  # noqa: E731
    argv = ["vectorize", raster, "--out", out / "fields.gpkg"]
    status, text, _ = ctrl_c(argv, tmp_path, writing, "temporary GeoPackage", sigterm=sigterm)
    assert status == (143 if sigterm else 130), text[-3000:]
    how = "terminated (SIGTERM)" if sigterm else "interrupted"
    assert text.strip().splitlines()[-1] == f"convlora-geo vectorize: {how}; nothing was written"
    assert [p.name for p in out.iterdir()] == [".fields.gpkg.lock"]  # released: it holds nothing


def test_a_polygon_file_outgrowing_the_file_size_limit_is_one_line(tmp_path: Path) -> None:
    """`vectorize` under `ulimit -f` smaller than its GeoPackage (which SQLite reports without
    an error number, after rolling the file back): one line saying there is no room, status 2,
    no traceback, and the folder holds only the earlier file, as it was."""
    out = tmp_path / "fields.gpkg"
    out.write_bytes(b"earlier")
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (150 * 1024,) * 2)"
    done = subprocess.run(
        [sys.executable, "-c", f"{limit}; import sys, flows.cli; sys.exit(flows.cli.main())",
         "vectorize", str(FTW_PREDICTION), "--out", str(out), "--overwrite"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"convlora-geo vectorize: error: {out}: no room left to write it (")
    assert [p.name for p in tmp_path.iterdir()] == ["fields.gpkg"]
    assert out.read_bytes() == b"earlier"


def test_a_command_killed_outright_takes_its_temporary_prefect_server_with_it(
    tmp_path: Path,
) -> None:
    """SIGKILL to the command alone (a timeout, a container stopped past its grace period): the
    temporary Prefect server it started stops within seconds instead of serving on, orphaned."""
    scene = tmp_path / "mosaic.tif"
    mosaic_scene(scene, 6)
    argv = ["tile", scene, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES, "--out",
            tmp_path / "s.zarr", "--tile-size", "128"]  # fmt: skip
    proc, log = start_command(argv, tmp_path)
    try:
        wait_for(lambda: "temporary Prefect server" in log.read_text(), 120, "server line")
        (server,) = [c for c in psutil.Process(proc.pid).children() if "local_server" in
                     " ".join(c.cmdline())]  # fmt: skip
        proc.kill()
        proc.wait(timeout=10)
        wait_for(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE,
                 15, "end of the orphaned server")  # fmt: skip
    finally:
        for leftover in group_alive(proc.pid):
            leftover.kill()


@pytest.mark.parametrize("told", [True, False], ids=["told to stop", "not told"])
def test_ctrl_c_tells_a_local_dask_cluster_not_to_restart_the_workers_it_stops(told: bool) -> None:
    """Ctrl-C's handler tells the nannies of a local Dask cluster that their workers stop for
    good: a worker process that then ends stays ended. Not told, a nanny starts a new worker
    (one started while the command stopped outlived it and printed heartbeat tracebacks)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs=LOCAL_SCHEDULER_HTTP) as cluster:  # fmt: skip
        nanny = next(iter(cluster.workers.values()))
        worker = nanny.pid
        if told:
            stop_local_dask_restarts()
        os.kill(worker, signal.SIGKILL)
        time.sleep(3)
        assert nanny.is_alive() is not told and nanny.pid != worker


def test_running_out_of_memory_is_one_line_and_the_rerun_trains(store: Path, work: Path) -> None:
    """Training at 1024 px under an address-space limit 1 GiB above what the interpreter holds
    once imported: status 2, the out-of-memory line, no traceback, the earlier outputs intact
    and nothing in the run folder but its config.json; the same command at a smaller size then
    trains."""
    run = work / "run"
    argv = ["train", store, "--out", run, "--sam", "tiny", "--adapter", "lora",
            "--batch-size", "2", "--accumulate", "1", "--steps", "1", "--device", "cpu",
            "--no-progress"]  # fmt: skip
    before = snapshot(work, dirs=False)
    done = subprocess.run(
        [sys.executable, "-c", UNDER_LIMIT, "1024", *map(str, argv), "--image-size", "1024"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"convlora-geo train: error: {OUT_OF_MEMORY}"
    assert "Traceback" not in done.stderr and done.stderr.count(": error: ") == 1
    after = snapshot(work, dirs=False)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == ["run", "run/config.json"]
    code, err = run_cli(*argv, "--image-size", "64")
    assert code == 0, err[-3000:]
    assert (run / "adapter.safetensors").exists() and (run / "last").is_dir()
