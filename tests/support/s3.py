"""A real S3-compatible server for tests: moto's server on 127.0.0.1 (a free port), in a thread,
recording every request (method, path, Range header, bytes sent) so tests can see how much of
an object a reader fetched."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import pytest
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    bytes_sent: int = 0


class S3Server:
    """moto's S3 API behind a recording WSGI layer; `endpoint` is its http://127.0.0.1:PORT.
    Reads (GET) of paths under a prefix in `fail` (`/bucket/key`), and writes (PUT, POST) of
    paths under one in `fail_writes`, are answered 503, as a store that cannot serve an object
    for a while answers."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.fail: set[str] = set()
        self.fail_writes: set[str] = set()
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", 0, self._record, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _record(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(
            environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_RANGE")
        )
        self.requests.append(request)
        failing = any(request.path.startswith(prefix) for prefix in self.fail)
        failing_write = any(request.path.startswith(prefix) for prefix in self.fail_writes)
        if (failing and request.method == "GET") or (
            failing_write and request.method in ("PUT", "POST")
        ):
            body = b"<Error><Code>ServiceUnavailable</Code></Error>"
            headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
            start_response("503 Service Unavailable", headers)
            return [body]
        return self._count(request, self._app(environ, start_response))

    @staticmethod
    def _count(request: Request, body: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in body:
            request.bytes_sent += len(chunk)
            yield chunk

    def env(self) -> dict[str, str]:
        """Environment for clients of this server only: its endpoint, test credentials, and no
        shared AWS config or instance-metadata lookups."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    def gets(self, path: str) -> list[Request]:
        """The GET requests for one object, path as `/bucket/key`."""
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A started `S3Server`, stopped on exit."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3_filesystem() -> fsspec.AbstractFileSystem:
    """A fresh s3fs filesystem (no cached listings) for the endpoint in the environment."""
    return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)


def new_bucket(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the server, with the environment (AWS settings, no staging
    override) pointing at it for the rest of the test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CONVLORA_GEO_STAGING")):
            monkeypatch.delenv(name)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_filesystem().mkdir(name)
    return name
