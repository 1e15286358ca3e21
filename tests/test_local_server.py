"""The temporary Prefect server of a command: started early, stopped when a Prefect API is
configured after all, and, without one, serving the flows of the command and gone after them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from flows import local_server
from tests.support.cli import NO_SERVER


@flow(name="echo")
def echo_flow(value: int) -> int:
    """A flow that returns what it is given."""
    return value


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
    """In-process (no early start): the server gets this process's settings (its PREFECT_HOME
    here), runs the flow, keeps its run and is stopped afterwards."""
    with temporary_settings({PREFECT_API_URL: None, PREFECT_HOME: tmp_path}):
        assert local_server.run_flow(__name__, "echo_flow", value=7) == 7
    with sqlite3.connect(tmp_path / "prefect.db") as db:
        states = db.execute(
            "SELECT flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
            "WHERE flow.name = 'echo'"
        ).fetchall()
    assert states == [("COMPLETED",)]
