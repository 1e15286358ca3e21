"""Round trip on a real `prefect server`: work pools, `prefect deploy --all` on the project's own
prefect.yaml, `prefect deployment run finetune/field-boundaries`, a process worker `--run-once`."""

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

import httpx
import pytest

from geo.contracts import AdapterMetadata

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.prefect]


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


def test_deploy_run_finetune_with_process_worker(project: Path, tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_CLI_PROMPT": "false",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ],
        env=env,
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "prefect server exited during startup"
            assert time.monotonic() < deadline, "prefect server did not become healthy in 180 s"
            time.sleep(1)

        for pool in ("cpu", "gpu"):
            prefect("work-pool", "create", pool, "--type", "process", env=env, cwd=project)
        out = prefect("--no-prompt", "deploy", "--all", env=env, cwd=project)
        assert "finetune/field-boundaries" in out

        out = prefect(
            "deployment", "run", "finetune/field-boundaries",
            "-p", "steps=2", "-p", "image_size=64", "-p", "accumulate=1",
            env=env, cwd=project,
        )  # fmt: skip
        run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)

        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--run-once"],
            env=env,
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        log, _ = worker.communicate(timeout=480)
        assert worker.returncode == 0, log[-4000:]

        state = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
        assert state["type"] == "COMPLETED", f"{state}\n{log[-4000:]}"
        flow_run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        assert flow_run["parameters"]["steps"] == 2
        assert flow_run["parameters"]["sam"] == "tiny"  # the deployment's own, kept
        run_dir = project / "runs" / "field-boundaries"
        assert AdapterMetadata.read(run_dir).model.sam_variant == "tiny"
        records = [
            json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        assert max(r["step"] for r in records) == 2  # the -p steps=2 override took effect
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
