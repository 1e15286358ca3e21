"""A static file server on 127.0.0.1 that answers HTTP Range requests, and logs what it sent.

Python's `SimpleHTTPRequestHandler` ignores `Range` and always sends whole files, so GDAL's
`/vsicurl/` would read COGs by downloading them. This handler answers `bytes=a-b`, `bytes=a-`
and `bytes=-n` with 206 (several ranges as multipart/byteranges), 416 when unsatisfiable, and keeps
connections alive (HTTP/1.1) as a real object store does. Every request is recorded (method, path,
Range header, status, body bytes sent) so tests can check that no whole asset was downloaded.

`fail` holds path prefixes to answer with 503, to make a real read fail for a while, `forbid`
path prefixes to answer with 403, as a storage service answers a URL whose token expired. With
`signature` set, the server also stands for a storage service that only serves signed URLs, as
Azure Blob Storage serves Planetary Computer's assets: a request for an absolute URL (the server
used as an HTTP proxy, `GDAL_HTTP_PROXY`) whose query lacks `sig=SIGNATURE` is answered 403.
"""

from __future__ import annotations

import email.utils
import mimetypes
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class Logged:
    """One request as the server answered it."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int  # body bytes
    size: int | None  # the file's size, when the path was a file


class RangeServer:
    """Serve `root` on 127.0.0.1 (a free port) in a background thread; use as a context manager."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.fail: set[str] = set()
        self.forbid: set[str] = set()
        self.signature: str | None = None
        self._log: list[Logged] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def requests(self) -> list[Logged]:
        with self._lock:
            return list(self._log)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    def record(self, entry: Logged) -> None:
        with self._lock:
            self._log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms stalls between headers and body (keep-alive)
    server_ref: RangeServer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        server = self.server_ref
        path = unquote(urlsplit(self.path).path)
        header = self.headers.get("Range")
        file = (server.root / path.lstrip("/")).resolve()
        if any(path.startswith(p) for p in server.fail):
            return self._plain(HTTPStatus.SERVICE_UNAVAILABLE, path, header, body)
        proxied = "://" in self.path
        unsigned = proxied and server.signature and f"sig={server.signature}" not in self.path
        if unsigned or any(path.startswith(p) for p in server.forbid):
            return self._plain(HTTPStatus.FORBIDDEN, path, header, body)
        if not file.is_relative_to(server.root) or not file.is_file():
            return self._plain(HTTPStatus.NOT_FOUND, path, header, body)
        size = file.stat().st_size
        ranges = _parse_ranges(header, size) if header else None
        common = {
            "Accept-Ranges": "bytes",
            "Last-Modified": email.utils.formatdate(file.stat().st_mtime, usegmt=True),
            "ETag": f'"{file.stat().st_mtime_ns:x}-{size:x}"',
        }
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ranges == []:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            server.record(Logged(self.command, path, header, 416, 0, size))
            return
        with open(file, "rb") as f:
            if ranges is None:
                status, parts, payload = 200, [(0, size - 1)], None
            elif len(ranges) == 1:
                status, parts, payload = 206, ranges, None
            else:
                status, parts = 206, ranges
                payload = _multipart(f, ranges, size, ctype)
            self.send_response(status)
            for key, value in common.items():
                self.send_header(key, value)
            if payload is not None:
                self.send_header("Content-Type", "multipart/byteranges; boundary=RANGEBOUNDARY")
                self.send_header("Content-Length", str(len(payload)))
            else:
                start, end = parts[0]
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(end - start + 1))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            sent = 0
            if body:
                if payload is not None:
                    self.wfile.write(payload)
                    sent = len(payload)
                else:
                    start, end = parts[0]
                    f.seek(start)
                    for chunk in _chunks(f, end - start + 1):
                        self.wfile.write(chunk)
                        sent += len(chunk)
        server.record(Logged(self.command, path, header, status, sent, size))

    def _plain(self, status: HTTPStatus, path: str, header: str | None, body: bool) -> None:
        text = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)
        self.server_ref.record(
            Logged(self.command, path, header, status.value, len(text) if body else 0, None)
        )


def _parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Inclusive (start, end) pairs; None for a header to ignore (send the whole file), [] when
    no range is satisfiable (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    ranges = []
    for part in spec.split(","):
        match = RANGE.match(part)
        if not match or match.groups() == ("", ""):
            return None
        first, last = match.groups()
        if first == "":  # the last n bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start <= end and start < size:
            ranges.append((start, end))
    return ranges


def _multipart(f: BinaryIO, ranges: list[tuple[int, int]], size: int, ctype: str) -> bytes:
    out = bytearray()
    for start, end in ranges:
        out += (
            f"\r\n--RANGEBOUNDARY\r\nContent-Type: {ctype}\r\n"
            f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n"
        ).encode()
        f.seek(start)
        out += f.read(end - start + 1)
    out += b"\r\n--RANGEBOUNDARY--\r\n"
    return bytes(out)


def _chunks(f: BinaryIO, length: int, size: int = 1 << 16) -> Iterator[bytes]:
    while length > 0:
        chunk = f.read(min(size, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk
