"""A --dask-address is checked before any work: a port that opens passes, a closed one or a
malformed address is one line, and Dask's local scheduler names are not addresses."""

from __future__ import annotations

import socket

import pytest

from geo.errors import InputError
from geo.io.scheduler import check_scheduler


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_listening_port_passes_and_local_names_are_not_probed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_scheduler(f"tcp://127.0.0.1:{port}")
        check_scheduler(f"127.0.0.1:{port}")
    for local in (None, "", "threads", "processes", "sync", "inproc://worker"):
        check_scheduler(local)


def test_a_closed_port_or_a_malformed_address_is_one_line() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(InputError) as refused:
        check_scheduler(address)
    line = str(refused.value)
    assert line.startswith(f"--dask-address {address}: no Dask scheduler answers there (")
    assert "\n" not in line
    with pytest.raises(InputError, match="not a scheduler address"):
        check_scheduler("tcp://scheduler:port")
    with pytest.raises(InputError, match="^CONVLORA_GEO_DASK_ADDRESS tcp://"):
        check_scheduler(address, option="CONVLORA_GEO_DASK_ADDRESS")
