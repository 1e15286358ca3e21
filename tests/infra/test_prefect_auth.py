"""Prefect's basic auth, configured as infra/docker-compose.yml configures it, really protects a
real `prefect server` on 127.0.0.1, and the workers' setting gets through."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.compose import example_env, rendered

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

CLIENT = """
import asyncio
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

async def main():
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name="cpu", type="process"))
        print([pool.name for pool in await client.read_work_pools()])

asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "0"}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return rendered(example_env(tmp_path_factory.mktemp("compose")))["services"]


@pytest.fixture(scope="module")
def server(compose: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1 with the compose file's auth setting; its API URL."""
    tmp = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    auth = compose["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    env = {
        **_clean_env(tmp),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp}/prefect.db",
    }
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--no-services", "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while _status_or_none(f"{api}/health") != 200:
            assert process.poll() is None, (tmp / "server.log").read_text()
            assert time.monotonic() < deadline, "prefect server did not start in 120 s"
            time.sleep(0.5)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)
    except OSError:
        return None


def test_the_api_refuses_requests_without_the_password(server: str, compose: dict) -> None:
    auth = compose["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert _status(f"{server}/admin/version") == 401
    assert _status(f"{server}/admin/version", auth="admin:wrong") == 401
    assert _status(f"{server}/admin/version", auth=auth) == 200
    assert _status(f"{server}/health") == 200  # left open for health checks


def test_a_worker_with_the_compose_setting_gets_through(
    server: str, compose: dict, tmp_path: Path
) -> None:
    worker_env = compose["cpu-worker"]["environment"]
    env = {**_clean_env(tmp_path), "PREFECT_API_URL": server}
    refused = subprocess.run(
        [sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "401" in refused.stderr

    env["PREFECT_API_AUTH_STRING"] = worker_env["PREFECT_API_AUTH_STRING"]
    accepted = subprocess.run(
        [sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, timeout=120
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "['cpu']"
