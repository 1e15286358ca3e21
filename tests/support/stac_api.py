"""A real STAC API on 127.0.0.1 for tests: `rustac serve` with its in-memory backend.

`rustac` (PyPI, formerly `stacrs`) ships a Rust STAC API server; `rustac serve COLLECTION.json ...
ITEMS.json` loads collections and item collections into memory and answers /search (item search:
bbox, intersects, datetime, collections, ids, limit and paging). Its memory backend does not
conform to the query, filter or sort extensions (an API that does not advertise them).
"""

from __future__ import annotations

import json
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


class RustacServer:
    """`rustac serve` on 127.0.0.1 (a free port) over the given JSON files; a context manager."""

    def __init__(self, files: list[Path], log: Path) -> None:
        binary = rustac_binary()
        if binary is None:
            raise RuntimeError("rustac is not installed (pip install rustac)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [binary, "serve", "--addr", f"127.0.0.1:{self.port}", *map(str, files)]
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RustacServer:
        self._log = open(self._log_path, "wb")  # noqa: SIM115 (closed in __exit__)
        self._proc = subprocess.Popen(self._cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"rustac serve exited: {self._log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as answer:
                    json.load(answer)
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"rustac serve did not answer in 20 s: {self._log_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
