"""The temporary Prefect server of a command: started early, stopped when a Prefect API is
configured after all, and, without one, serving the flows of the command and gone after them."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
    temporary_settings,
)

from flows import local_server
from tests.support.cli import NO_SERVER
from tests.support.prefect_db import block_type_count, last_lines


@flow(name="echo")
def echo_flow(value: int) -> int:
    """A flow that returns what it is given."""
    return value


@flow(name="refuse", retries=0)
def refuse_flow() -> None:
    """A flow that fails."""
    raise ValueError("refused on purpose")


def test_a_configured_api_stops_the_early_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    local_server.start_early()
    server = local_server._early[0]
    with temporary_settings({PREFECT_API_URL: NO_SERVER}), local_server.prefect_api() as ready:
        ready()  # nothing to wait for
    assert server.process.poll() is not None and not local_server._early


@pytest.mark.slow
@pytest.mark.prefect
def test_without_an_api_a_flow_reports_to_a_temporary_server(tmp_path: Path) -> None:
    """In-process (no early start): the server gets this process's settings (its database here,
    set explicitly: another test's Prefect harness may have set one for the whole process) and
    keeps each flow's run with its last log line, a failed run's too; it registers no block
    types (they cost seconds at every start and these flows use none)."""
    database = tmp_path / "prefect.db"
    url = f"sqlite+aiosqlite:///{database}"
    with temporary_settings({PREFECT_API_URL: None, PREFECT_SERVER_DATABASE_CONNECTION_URL: url}):
        assert local_server.run_flow(__name__, "echo_flow", value=7) == 7
        with pytest.raises(ValueError, match="refused on purpose"):
            local_server.run_flow(__name__, "refuse_flow")
    assert last_lines(database) == {
        "echo": ("COMPLETED", "Finished in state Completed()"),
        "refuse": ("FAILED", "Finished in state Failed('Flow run encountered an exception: "
                   "ValueError: refused on purpose')"),
    }  # fmt: skip
    assert block_type_count(database) == 0
