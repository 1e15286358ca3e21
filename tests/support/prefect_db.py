"""What a Prefect server that has stopped kept in its SQLite database."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def last_lines(database: Path) -> dict[str, tuple[str, str]]:
    """For the latest top-level run of each flow: its state and the last log line of it that
    reached the server."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT flow.name, flow_run.state_type, log.message FROM flow_run "
            "JOIN flow ON flow.id = flow_run.flow_id JOIN log ON log.flow_run_id = flow_run.id "
            "WHERE flow_run.parent_task_run_id IS NULL ORDER BY flow_run.created, log.timestamp"
        ).fetchall()
    return {name: (state, message) for name, state, message in rows}


def block_type_count(database: Path) -> int:
    """How many block types the server registered."""
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM block_type").fetchone()[0]
