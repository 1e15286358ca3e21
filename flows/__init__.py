"""Thin Prefect flows over `geo` and `convlora`, and the `convlora-geo` CLI.

Importing this package sets safe defaults for Prefect's temporary local server before Prefect
reads its settings: a first start migrates a new SQLite database, which takes ~20 s on a small
machine, longer than Prefect's default 20 s startup timeout; telemetry is off (no network). It
also sends the library's INFO logs to the flow run's logs on the Prefect server (`flows.logs`).
"""

import os

from flows.logs import forward_library_logs

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
forward_library_logs()
