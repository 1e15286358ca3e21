"""Where tasks run: threads for one item, Dask for many (an existing scheduler or local)."""

from __future__ import annotations

import logging
import os

from prefect import get_client
from prefect.settings import get_current_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.worker_env import set_env
from geo.io.scheduler import check_scheduler

DASK_ADDRESS_ENV = "CONVLORA_GEO_DASK_ADDRESS"
QUIET_DASK = {"DASK_LOGGING__DISTRIBUTED": "warning"}  # Dask's own logs: warnings and errors
LOCAL_SCHEDULER_HTTP = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
"""A local Dask scheduler's HTTP server (health checks; no dashboard) on loopback at a free port.
Without an address Dask takes port 8787 even with the dashboard off, and prints a warning when
another cluster (a second run, a notebook) holds it."""
log = logging.getLogger(__name__)


def current_api_url() -> str:
    """The API this process reports to (the temporary local server when none is set)."""
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


def dask_address(parameter: str | None) -> str | None:
    """The Dask scheduler to join: the parameter, else the CONVLORA_GEO_DASK_ADDRESS setting
    (InputError when no scheduler answers there)."""
    if parameter:
        return parameter  # checked with the stage's other inputs
    address = os.environ.get(DASK_ADDRESS_ENV) or None
    check_scheduler(address, option=DASK_ADDRESS_ENV)
    return address


def worker_prefect_env() -> dict[str, str]:
    """What Dask workers need to report to this process's Prefect API (their task runs and
    logs): its URL, and its key (Prefect Cloud) or basic-auth string (a server behind
    `PREFECT_SERVER_API_AUTH_STRING`) where it needs one; secrets travel in memory only."""
    env = {"PREFECT_API_URL": current_api_url()}
    api = get_current_settings().api
    if api.key is not None:
        env["PREFECT_API_KEY"] = api.key.get_secret_value()
    if api.auth_string is not None:
        env["PREFECT_API_AUTH_STRING"] = api.auth_string.get_secret_value()
    return env


def share_api_url(address: str) -> None:
    """Give the workers of an existing Dask cluster this process's Prefect API settings."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.run(set_env, worker_prefect_env())


class _WorkerShutdown(logging.Filter):
    """Drops the nanny's warning that it killed a worker still exiting after 4 s when the
    cluster closes: Prefect's background threads in each worker outlive the close request
    (every run of a Prefect flow on a local cluster does this; the results are in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Worker process still alive after")


def quiet_local_dask() -> None:
    """No start-up and shut-down chatter from a local Dask cluster: warnings and errors only."""
    for name in ("distributed", "prefect.task_runner.dask"):
        logging.getLogger(name).setLevel(logging.WARNING)
    nanny = logging.getLogger("distributed.nanny")
    if not any(isinstance(f, _WorkerShutdown) for f in nanny.filters):
        nanny.addFilter(_WorkerShutdown())


def task_runner_for(n_items: int, address: str | None, local_workers: int = 2) -> TaskRunner:
    """Dask on `address`, a two-process LocalCluster when several items pay, else threads.

    Dask workers get this process's Prefect API URL (and key) so their task runs report to the
    same server instead of each starting a temporary server of its own.
    """
    if address:
        share_api_url(address)
        return DaskTaskRunner(address=address)
    if n_items <= 1:
        return ThreadPoolTaskRunner(max_workers=1)
    quiet_local_dask()
    workers = min(local_workers, n_items)
    log.info("%d items on a local Dask cluster of %d processes", n_items, workers)
    env = {**worker_prefect_env(), **QUIET_DASK, "OMP_NUM_THREADS": "1"}
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "scheduler_kwargs": LOCAL_SCHEDULER_HTTP,
            "env": env,
        }
    )
