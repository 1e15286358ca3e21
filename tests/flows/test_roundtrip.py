"""Round trip on a real `prefect server`: work pools, `prefect deploy --all` on the project's own
prefect.yaml, `prefect deployment run finetune/field-boundaries` and `ingest/field-boundaries`,
each run by a process worker `--run-once`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import httpx
import pytest

from geo.contracts import AdapterMetadata
from tests.support.tiny_sam import save_tiny_sam

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.prefect]


RETRIED = {429, 502, 503}  # what Prefect's own client retries (503: the SQLite database was busy)


def api_call(method: str, url: str, **kwargs) -> httpx.Response:
    """One request to the Prefect API, retried with backoff as Prefect's client retries it."""
    for attempt in range(6):
        response = httpx.request(method, url, timeout=10, **kwargs)
        if response.status_code not in RETRIED:
            break
        time.sleep(0.5 * 2**attempt)
    return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect(*args: str, env: dict[str, str], cwd: Path, timeout: int = 120) -> str:
    """Run the prefect CLI; fail the test with its output if it fails."""
    proc = subprocess.run(
        [str(BIN / "prefect"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def stop(proc: subprocess.Popen) -> None:
    """Stop a process group: SIGINT, then SIGKILL (a worker ignores a single SIGTERM)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A working copy of the project's deployment files so outputs stay out of the checkout."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(ROOT / "prefect.yaml", work / "prefect.yaml")
    shutil.copytree(ROOT / "flows", work / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "examples").symlink_to(ROOT / "examples")
    return work


def run_deployment(
    name: str, pool: str, *params: str, env: dict[str, str], cwd: Path, ends: str = "COMPLETED"
) -> dict:
    """`prefect deployment run NAME -p ...`, then one process worker of POOL `--run-once`;
    returns the flow run as the API holds it when the worker is done, in state `ends`."""
    args = [arg for param in params for arg in ("-p", param)]
    out = prefect("deployment", "run", name, *args, env=env, cwd=cwd)
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert match, out
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--run-once"],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        log, _ = worker.communicate(timeout=480)
    finally:
        stop(worker)
    assert worker.returncode == 0, log[-4000:]
    flow_run = api_call("GET", f"{env['PREFECT_API_URL']}/flow_runs/{match.group(1)}").json()
    assert flow_run["state"]["type"] == ends, f"{flow_run['state']}\n{log[-4000:]}"
    return flow_run


def stored_logs(api: str, flow_run_id: str) -> list[tuple[str, str]]:
    """(logger, message) of a flow run's logs on the server."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    logs = api_call("POST", f"{api}/logs/filter", json=body).json()
    return [(log["name"], log["message"]) for log in logs]


def schedule(api: str, deployment: str) -> dict:
    """The deployment's only schedule."""
    found = api_call("GET", f"{api}/deployments/name/{deployment}").json()
    (only,) = found["schedules"]
    return {**only, "deployment_id": found["id"]}


def start_server(port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:PORT, healthy within 180 s."""
    api = env["PREFECT_API_URL"]
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-ui", "--analytics-off"],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        assert server.poll() is None, "prefect server exited during startup"
        assert time.monotonic() < deadline, "prefect server did not become healthy in 180 s"
        time.sleep(1)


def test_deploy_finetune_in_two_processes_then_ingest_twice(project: Path, tmp_path: Path) -> None:
    """The shipped deployments with process workers: a redeploy keeps a paused schedule paused; `-p
    epochs=1` beside the deployment's `steps: 300` fails, its message naming parameters as
    passed, not flags, in one line; `finetune` trains Conv-LoRA in two gloo processes (`-p
    nproc=2`, by epochs with `-p steps=null`; its scenes given as one pattern string, `-p
    images=...*.tif`, not a JSON list; the run named after them) and its library logs, and what
    its store holds, are stored with the flow run; `ingest` with its defaults completes twice,
    the second time predicting nothing (the scene's one-band label mask beside it is skipped,
    once; no empty polygon table), and its region layer is written by the first run only."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_CLI_PROMPT": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "convlora" / "src")]),
    }
    server = start_server(port, env, project)
    try:
        for pool in ("cpu", "gpu"):
            prefect("work-pool", "create", pool, "--type", "process", env=env, cwd=project)
        out = prefect("--no-prompt", "deploy", "--all", env=env, cwd=project)
        assert "finetune/field-boundaries" in out

        nightly = schedule(api, "ingest/field-boundaries")
        assert (nightly["slug"], nightly["active"]) == ("nightly", True)
        assert schedule(api, "ingest/sentinel-2")["active"] is False  # needs the internet
        paused = api_call(
            "PATCH", f"{api}/deployments/{nightly['deployment_id']}/schedules/{nightly['id']}",
            json={"active": False},
        )  # fmt: skip
        assert paused.status_code == 204, paused.text
        prefect("--no-prompt", "deploy", "--all", env=env, cwd=project)
        assert schedule(api, "ingest/field-boundaries")["active"] is False  # kept by a redeploy

        both = run_deployment(
            "finetune/field-boundaries", "gpu", "epochs=1", env=env, cwd=project, ends="FAILED"
        )
        message = both["state"]["message"]
        assert "give epochs or steps, not both (got epochs 1 and steps 300)" in message, message
        said = [m for _, m in stored_logs(api, both["id"])]
        assert any("give epochs or steps, not both" in m for m in said), said
        assert not any(re.search(r"--(epochs|steps)|Engine execution exited", m) for m in said)

        checkpoint = save_tiny_sam(tmp_path / "sam_tiny.pth")  # as users pass sam_vit_b_01ec64
        finetune = run_deployment(
            "finetune/field-boundaries", "gpu", "epochs=1", "steps=null", "image_size=64",
            "batch_size=1",
            "accumulate=1", f"sam_checkpoint={checkpoint}", "nproc=2", "device=cpu",
            "images=examples/data/nebraska_center_pivots_landsat/nebraska_*.tif",  # one string
            env=env, cwd=project,
        )  # fmt: skip
        assert finetune["parameters"]["nproc"] == 2
        assert finetune["parameters"].get("sam", "auto") == "auto"  # from the checkpoint
        assert finetune["parameters"]["images"].endswith("nebraska_*.tif")
        assert finetune["name"] == "nebraska_*.tif -> field-boundaries (sam_tiny.pth conv-lora)"
        run_dir = project / "runs" / "field-boundaries"
        metadata = AdapterMetadata.read(run_dir)
        assert (metadata.model.sam_variant, metadata.model.adapter) == ("tiny", "conv-lora")
        assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
        records = [
            json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        epochs = [r for r in records if r.get("kind") == "epoch"]
        assert len(epochs) == 1 and 0 < epochs[0]["step"] < 300  # -p epochs=1 -p steps=null
        logs = stored_logs(api, finetune["id"])
        assert any(name.startswith("geo.") for name, _ in logs), logs
        holds = [m for _, m in logs if re.match(r"\d+ tiles of \d+ px, overlap \d+: \d+ train", m)]
        assert holds and any(m.startswith("labelled pixels: background ") for _, m in logs)
        assert any(
            name == "convlora.training" and re.match(r"step \d+/\d+  loss ", message)
            for name, message in logs
        ), logs  # relayed from rank 0 of the two training processes

        first = run_deployment("ingest/field-boundaries", "cpu", env=env, cwd=project)
        assert first["name"] == "nebraska_center_pivots_landsat -> field-boundaries"
        body = {"flows": {"name": {"any_": ["predict-scenes"]}}}
        fanned = api_call("POST", f"{api}/flow_runs/filter", json=body).json()
        assert [r["name"] for r in fanned] == ["nebraska_landsat_albers_30m -> field-boundaries"]
        predictions = project / "predictions" / "field-boundaries"
        classes = predictions / "nebraska_landsat_albers_30m_classes.tif"
        stamp = classes.stat().st_mtime_ns
        record = json.loads((predictions / "ingest-record.json").read_text())
        (model,) = record["models"].values()
        assert [Path(p).name for p in model["done"]] == ["nebraska_landsat_albers_30m.tif"]
        assert [Path(p).name for p in model["skipped"]] == ["pivots_mask.tif"]
        assert any("skipped" in m and "pivots_mask.tif" in m for _, m in
                   stored_logs(api, first["id"]))  # fmt: skip
        region = project / "predictions" / "field-boundaries.gpkg"  # its `region` parameter
        layer = gpd.read_file(region, layer="polygons")
        assert set(layer.source) <= {classes.name}
        region_stamp = region.stat().st_mtime_ns

        second = run_deployment("ingest/field-boundaries", "cpu", env=env, cwd=project)
        assert classes.stat().st_mtime_ns == stamp and region.stat().st_mtime_ns == region_stamp
        assert json.loads((predictions / "ingest-record.json").read_text()) == record
        body = {"artifacts": {"flow_run_id": {"any_": [second["id"]]}}}
        made = {a["key"] for a in api_call("POST", f"{api}/artifacts/filter", json=body).json()}
        assert made == {"ingest-summary"}  # no empty polygon table over the last one
        assert ("geo.ingest.run", "2 scene(s) found, 0 new for model " + next(
            iter(record["models"]))) in stored_logs(api, second["id"])  # fmt: skip
    finally:
        stop(server)
