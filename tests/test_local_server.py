"""The temporary Prefect server of a command: started early, stopped when a Prefect API is
configured after all, and, without one, serving the flows of the command and gone after them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
    temporary_settings,
)

from flows import local_server
from geo.errors import UnreachableError
from tests.support.cli import NO_SERVER, cli_process, refused
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, SCENE
from tests.support.prefect_db import block_type_count, last_lines


@flow(name="echo")
def echo_flow(value: int) -> int:
    """A flow that returns what it is given."""
    return value


@flow(name="refuse", retries=0)
def refuse_flow() -> None:
    """A flow that fails."""
    raise ValueError("refused on purpose")


def test_a_configured_api_stops_the_early_server_and_must_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    local_server.start_early()
    server = local_server._early[0]
    down = pytest.raises(UnreachableError, match=f"{NO_SERVER}: no Prefect API answers there")
    configured = temporary_settings({PREFECT_API_URL: NO_SERVER})  # nothing listens there
    with configured, local_server.prefect_api() as ready, down:
        ready()
    assert server.process.poll() is not None and not local_server._early


def test_a_command_is_refused_in_one_line_when_the_configured_api_is_down(tmp_path: Path) -> None:
    """A stopped `prefect server start`, with PREFECT_API_URL still set: valid inputs, then one
    line naming the URL (it was a traceback from the first flow), exit status 1 (a service that
    does not answer), and nothing written."""
    argv = ["tile", SCENE, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES,
            "--out", tmp_path / "s.zarr", "--tile-size", "128"]  # fmt: skip
    answers = f"{NO_SERVER}: no Prefect API answers there"
    refused(tmp_path, argv, answers, "prefect server start", status=1)


def test_a_command_is_refused_in_one_line_where_prefect_home_cannot_be_written(
    tmp_path: Path,
) -> None:
    """No API configured and a PREFECT_HOME that cannot be written (a read-only home in a
    container): the temporary server could not keep its database, and its start-up failure was
    230 lines of tracebacks from two processes. Now one line naming the folder, and no output."""
    (tmp_path / "a-file").write_text("not a folder\n")
    home = tmp_path / "a-file" / "prefect"  # cannot be created, not even by root
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = tmp_path / "s.zarr"
    done = cli_process(
        "tile",
        SCENE,
        "--labels",
        PIVOT_LABELS,
        "--class-map",
        PIVOT_CLASSES,
        "--out",
        out,
        "--tile-size",
        "128",
        env={**env, "PREFECT_HOME": str(home)},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"convlora-geo tile: error: {home}: Prefect's home folder (PREFECT_HOME) cannot be "
        "written, so no temporary Prefect server can keep its database there: set PREFECT_HOME "
        "to a writable folder, or PREFECT_API_URL to a running Prefect server"
    ]
    assert not out.exists() and not list(tmp_path.glob(".s.zarr*"))


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
