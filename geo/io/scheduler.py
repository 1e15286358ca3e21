"""Dask scheduler addresses: checked before any work, so that a mistyped or stopped scheduler is
one line up front instead of a traceback after the client's 30 s connection timeout."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from geo.errors import InputError

CONNECT_SECONDS = 5.0
NETWORK_SCHEMES = ("tcp", "tls")  # Dask's network protocols; others (inproc, ucx) are not probed


def check_scheduler(address: str | None, option: str = "--dask-address") -> None:
    """InputError unless a scheduler's port opens at `address` (`tcp://host:port`, `tls://...`
    or `host:port`); None and Dask's local scheduler names (`threads`, ...) pass unchecked."""
    if not address:
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        raise InputError(f"{option} {address}: not a scheduler address (tcp://HOST:PORT)") from None
    if parts.scheme not in NETWORK_SCHEMES or not host or port is None:
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"{option} {address}: no Dask scheduler answers there ({reason}); start one "
            "(`dask scheduler`) or leave the option out to run on this machine"
        ) from None
