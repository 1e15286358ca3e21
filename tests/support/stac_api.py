"""Real STAC APIs on 127.0.0.1 for tests.

- `rustac serve` (PyPI `rustac`, formerly `stacrs`, a dev dependency): a Rust STAC API server;
  `rustac serve COLLECTION.json ... ITEMS.json` loads collections and item collections into memory
  and answers /search (item search: bbox, intersects, datetime, collections, ids, paging). Its
  memory backend does not conform to the query, filter or sort extensions.
- stac-fastapi-static (PyPI): a stac-fastapi backend over a static catalog (a file:// or http(s)
  URL), with the filter extension (CQL2). Its 1.0.1 release breaks with current Starlette (its CORS
  middleware passes arguments by position), and pinning Starlette below 0.46 conflicts with
  Prefect's FastAPI, so it lives in a virtual environment of its own, used when
  STAC_FASTAPI_STATIC_PYTHON names its Python:

      python3 -m venv /opt/stac-api && /opt/stac-api/bin/pip install stac-fastapi-static==1.0.1 \
          uvicorn "starlette<0.46" "fastapi<0.116"
      export STAC_FASTAPI_STATIC_PYTHON=/opt/stac-api/bin/python
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def rustac_binary() -> str | None:
    """The `rustac` command beside this Python, or on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "rustac"
    return str(beside) if beside.exists() else shutil.which("rustac")


def stac_fastapi_static_python() -> str | None:
    """The Python of a stac-fastapi-static environment (STAC_FASTAPI_STATIC_PYTHON), if any."""
    python = os.environ.get("STAC_FASTAPI_STATIC_PYTHON")
    return python if python and Path(python).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """A server process on 127.0.0.1 that answers JSON at its root URL; a context manager."""

    def __init__(self, cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._cmd = cmd
        self._env = env
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        self._log = open(self._log_path, "wb")  # noqa: SIM115 (closed in __exit__)
        self._proc = subprocess.Popen(
            self._cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"{self._cmd[0]} exited: {self._log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as answer:
                    json.load(answer)
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"{self._cmd[0]} did not answer in 20 s: {self._log_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


class RustacServer(_Server):
    """`rustac serve` (in-memory backend) over collection and item collection JSON files."""

    def __init__(self, files: list[Path], log: Path) -> None:
        binary = rustac_binary()
        if binary is None:
            raise RuntimeError("rustac is not installed (pip install rustac)")
        port = _free_port()
        super().__init__([binary, "serve", "--addr", f"127.0.0.1:{port}", *map(str, files)],
                         port, log)  # fmt: skip


class StacFastapiStatic(_Server):
    """stac-fastapi-static over the static catalog at `catalog_url` (file:// or http(s))."""

    def __init__(self, catalog_url: str, log: Path) -> None:
        python = stac_fastapi_static_python()
        if python is None:
            raise RuntimeError("set STAC_FASTAPI_STATIC_PYTHON (see this module's docstring)")
        port = _free_port()
        env = {**os.environ, "CATALOG_HREF": catalog_url, "CACHE": "false"}
        cmd = [python, "-m", "uvicorn", "stac_fastapi.static.app:app", "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
        super().__init__(cmd, port, log, env)
