"""Prefect's temporary local server for one command, started as soon as the command starts.

Without a Prefect API configured, Prefect starts a temporary server at a flow's first API call:
it imports its server application into the command's own process (3-4 s on a 2-core machine),
then starts a server process that imports it again, and only then runs the flow. A command
that runs flows (`start_early`, called before its arguments are parsed) starts that same server,
Prefect's `create_app` as an ephemeral application (no UI, no services, its database in
PREFECT_HOME as always), in a process of its own, on a socket this process has already bound,
while the command imports what it needs, checks its inputs and loads its model: on a 2-core
machine `tile` on the demo scene took 14-21 s the first way and 11-14 s this way, `predict`
21-26 s and 11-15 s. The flows then report to it (`prefect_api`). A
configured API (PREFECT_API_URL, in the environment or the profile) is used as it is, and where
Prefect's temporary server is switched off none is started.

`python -m flows.local_server FD` serves the API on the listening socket FD.
"""

from __future__ import annotations

import atexit
import contextvars
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
STOP_SECONDS = 5  # how long the server may take to stop before it is killed
PARENT_CHECK_SECONDS = 1.0  # how often the server checks that its command still runs
# the names Prefect reads for registering block types at server start
REGISTER_BLOCKS_SETTINGS = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
    "PREFECT_API_BLOCKS_REGISTER_ON_START",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION",
    "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION",
}
CANCEL_SECONDS = 5  # how long an interrupted command waits for a configured API to take its news
_early: list[_Server] = []  # the server `start_early` started, until a flow block takes it
_serving: list[_Server] = []  # the temporary server the flows report to now


def start_early() -> None:
    """Start the temporary server now, unless PREFECT_API_URL is set (a profile that sets it,
    or one that switches the temporary server off, stops it again in `prefect_api`). It stops
    when the process exits, if no flow block took it. Not where Prefect's home folder cannot be
    written (the server could not keep its database): `prefect_api` says so in one line."""
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    if os.environ.get("PREFECT_API_URL") or _early or not writable_folder(home):
        return
    server = _Server()
    atexit.register(server.stop)
    _early.append(server)


@contextmanager
def prefect_api() -> Iterator[Callable[[], None]]:
    """The Prefect API for the flows run inside the block: the configured one, else a temporary
    local server (the one `start_early` started, or one started now), stopped on leaving once
    the flow runs' logs and events are sent (a failed run's too). Yields `ready()`, which waits
    until the API answers (a configured one must answer at once: `check_api`): call it after the
    imports, before the first flow."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_UI_URL,
        get_current_settings,
        temporary_settings,
    )

    settings = get_current_settings()
    server = _early.pop() if _early else None
    if settings.api.url or not settings.server.ephemeral.enabled:
        if server is not None:
            server.stop()
        yield check_api if settings.api.url else lambda: None
        return
    if not writable_folder(settings.home):
        if server is not None:
            server.stop()
        from geo.errors import InputError

        raise InputError(
            f"{settings.home}: Prefect's home folder (PREFECT_HOME) cannot be written, so no "
            "temporary Prefect server can keep its database there: set PREFECT_HOME to a "
            "writable folder, or PREFECT_API_URL to a running Prefect server"
        )
    server = server or _Server(
        {**os.environ, **settings.to_environment_variables(exclude_unset=True)}
    )
    timeout = settings.server.ephemeral.startup_timeout_seconds
    log.info(
        "reporting to a temporary Prefect server at %s (with `prefect server start` running "
        "and PREFECT_API_URL set, commands start sooner and keep their runs in view)",
        server.api_url,
    )
    try:
        # no UI: no "View at" link to a page that is not served
        with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}):
            _serving.append(server)
            try:
                yield lambda: server.ready(timeout)
            finally:  # a failed flow's logs too
                _serving.remove(server)
                _send_pending()
    finally:
        server.stop()


def cancel_interrupted_run(message: str) -> None:
    """Mark the flow run at work (this thread's) Cancelled with `message`, for a command that
    Ctrl-C stops at once: on a configured Prefect server it would show "Running" for ever.
    Nothing outside a flow run or with the temporary server (it stops with the command); gives
    up after CANCEL_SECONDS (an API that does not answer must not hold the command)."""
    if _serving:
        return
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext
    from prefect.states import Cancelled

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run_id = context.flow_run.id

    def cancel() -> None:
        with suppress(Exception), get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelled(message=message), force=True)

    sender = threading.Thread(target=contextvars.copy_context().run, args=(cancel,), daemon=True)
    sender.start()
    sender.join(CANCEL_SECONDS)


def writable_folder(path: Path) -> bool:
    """Whether `path` is a folder this process can write in (created when missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def check_api() -> None:
    """UnreachableError, one line, when the configured Prefect API does not answer: a `prefect
    server start` since stopped, with PREFECT_API_URL still set in the profile, failed the first
    flow with a traceback."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from geo.errors import UnreachableError

    url = get_current_settings().api.url
    try:
        with get_client(sync_client=True) as client:  # entering checks the API's version
            problem = client.api_healthcheck()
    except (RuntimeError, httpx.HTTPError) as exc:
        problem = exc
    if problem is not None:
        reason = " ".join(str(problem.__cause__ or problem).split())
        raise UnreachableError(
            f"{url}: no Prefect API answers there (PREFECT_API_URL; {reason}): start it with "
            "`prefect server start`, or unset PREFECT_API_URL and commands use a temporary "
            "local server"
        )


def run_flow(module: str, flow: str, **params: Any) -> Any:
    """Import the flow `flow` of `module` and run it with `params`, reporting to `prefect_api`."""
    with prefect_api() as ready:
        function = getattr(importlib.import_module(module), flow)
        ready()
        return function(**params)


class _Server:
    """A server process listening on a loopback port bound here (no other process can take it
    meanwhile; connections wait in the socket's queue until the server accepts them)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        """Start it, with `env` (default: this process's environment)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.api_url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
            fd = listener.fileno()
            command = [sys.executable, "-m", __name__, str(fd)]
            self.process = subprocess.Popen(command, pass_fds=(fd,), env=env)
        self.started = time.monotonic()
        self.answered = False

    def ready(self, timeout: float) -> None:
        """Wait until the API answers; RuntimeError when the server exits or does not answer
        within `timeout` seconds of its start (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)."""
        while not self.answered:
            left = timeout - (time.monotonic() - self.started)
            if self.process.poll() is not None or left <= 0:
                state = f"exited with status {self.process.returncode}" if left > 0 else (
                    f"did not answer within {timeout:.0f} s")  # fmt: skip
                raise RuntimeError(f"Prefect's temporary local server {state}")
            health = f"{self.api_url}/health"
            with suppress(OSError), urllib.request.urlopen(health, timeout=left) as answer:
                self.answered = answer.status == 200
            if not self.answered:
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (killed when it takes longer than STOP_SECONDS); again: nothing."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _send_pending() -> None:
    """Send the logs and events that Prefect's background workers still hold (as Prefect's test
    harness does before it stops its server)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with suppress(RuntimeError):  # no log worker was started
        APILogWorker.instance().drain()
    EventsWorker.drain_all()


def serve(fd: int) -> None:
    """Serve Prefect's API as an ephemeral application on the listening socket `fd`, without
    registering block types at start (unless the environment asks for it): that imports every
    installed Prefect collection, 1.7 s of a 12.4 s `tile` command on a 2-core machine, and a
    temporary server's flows use no blocks (`prefect server start` still registers them)."""
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), daemon=True).start()
    if not REGISTER_BLOCKS_SETTINGS & os.environ.keys():
        os.environ["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
        os.environ["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] = "false"
    import uvicorn
    from prefect.server.api.server import create_app

    app = create_app(ephemeral=True, final=True)
    # A connection still being reset when the server stops is cancelled, and SQLAlchemy's pool
    # logs that with a traceback ("Exception during reset or similar"): noise at the end of a
    # command that succeeded, nothing a user can act on.
    logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
    config = uvicorn.Config(app, log_level="error", lifespan="on")
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def _stop_with_parent(parent: int) -> None:
    """Stop the server (as `_Server.stop` does: SIGTERM) once the command that started it is
    gone (killed: SIGKILL, or SIGTERM from a timeout or a container stop), instead of serving on,
    orphaned, for ever."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
