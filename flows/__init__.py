"""Thin Prefect flows over `geo` and `convlora`, and the `convlora-geo` CLI.

Importing this package sets safe defaults for Prefect's temporary local server before Prefect
reads its settings: a first start migrates a new SQLite database, which takes ~20 s on a small
machine, longer than Prefect's default 20 s startup timeout; telemetry is off (no network).
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "geo,convlora")
