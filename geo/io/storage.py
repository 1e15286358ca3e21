"""Object storage: scenes and outputs given as URLs (s3://, gs://, az://, http(s)://).

Inputs are read in windows through GDAL's virtual file systems (`gdal_path` + `gdal_env`),
never downloaded whole. Outputs are written in a local staging folder and uploaded file by
file when complete (`StagedOutput`); listing, existence and small JSON reads go through fsspec.
Local paths pass through every function unchanged, so callers need one code path.

One setting configures both GDAL and fsspec for an S3-compatible endpoint: `AWS_ENDPOINT_URL_S3`
(or `AWS_ENDPOINT_URL`) with the usual `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import fsspec

from geo.errors import InputError, UnreachableError

log = logging.getLogger(__name__)

EXTRAS_HINT = "pip install 'convlora-geo[cloud]'"
# scheme -> (GDAL virtual file system prefix, the fsspec backend's module)
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("/vsis3/", "s3fs"),
    "gs": ("/vsigs/", "gcsfs"),
    "gcs": ("/vsigs/", "gcsfs"),
    "az": ("/vsiaz/", "adlfs"),
    "abfs": ("/vsiaz/", "adlfs"),
    "http": ("/vsicurl/", "aiohttp"),
    "https": ("/vsicurl/", "aiohttp"),
}
READ_ONLY = {"http", "https"}
# Failures while probing a URL, by exception class name (botocore, google-auth, azure-core).
NO_CREDENTIALS = {"NoCredentialsError", "DefaultCredentialsError", "ClientAuthenticationError"}
UNREACHABLE = {"EndpointConnectionError", "ServiceRequestError", "ClientConnectorError"}
URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# GDAL settings for reading remote rasters (URLs, and VRTs whose sources are URLs): no directory
# listing on open (a request fewer per file, none on object stores), consecutive ranges merged,
# transient errors (429, 5xx) retried with back-off, a stalled transfer abandoned, and a larger
# cache of the bytes read. (VSI_CACHE is not set: over /vsicurl/ it only doubled the first read.)
REMOTE_GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_HTTP_LOW_SPEED_TIME": "60",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
    "CPL_VSIL_CURL_CACHE_SIZE": str(128 << 20),
}

NOT_FOUND = "not found"  # what `unserved` and the probes say of a missing object

UNCACHED_REMOTE_ENV = {"CPL_VSIL_CURL_NON_CACHED": "/vsicurl/:/vsis3/:/vsigs/:/vsiaz/"}
"""GDAL settings under which remote files are not kept in GDAL's per-process cache: a file that
failed is asked for again by a retry in the same process (prefixes, split at ':')."""


def is_url(path: str | Path) -> bool:
    """True for `scheme://...` (object storage or HTTP), False for local paths."""
    return bool(URL.match(str(path)))


def _scheme(url: str) -> str:
    """The URL's scheme in lower case ('' for a local path)."""
    match = URL.match(url)
    return match.group(1).lower() if match else ""


def join(base: str, *names: str) -> str:
    """`base/name/...` for URLs and local paths alike."""
    return "/".join([base.rstrip("/"), *(n.strip("/") for n in names)])


def check_storage(
    path: str, role: Literal["input", "input folder", "output", "output file"]
) -> None:
    """Refuse a URL that cannot work, with one line saying why: an unknown scheme, an output
    (a folder, or a file for "output file") on a read-only scheme, the cloud extras missing, or
    (asking the store once) missing credentials, an unreachable endpoint, a missing input or
    bucket. An "input folder" (a prefix scenes arrive under) may hold nothing yet: object
    storage has no empty folders. Local paths pass."""
    if not is_url(path):
        return
    kind = _scheme(path)
    if kind not in SCHEMES:
        supported = ", ".join(f"{s}://" for s in SCHEMES)
        raise InputError(f"{path}: unsupported storage scheme {kind}:// (supported: {supported})")
    if role.startswith("output") and kind in READ_ONLY:
        raise InputError(f"{path}: {kind}:// is read-only; write outputs to s3://, gs:// or az://")
    module = SCHEMES[kind][1]
    try:
        importlib.import_module(module)
    except ImportError:
        raise InputError(f"{path}: {kind}:// needs the cloud extras: {EXTRAS_HINT}") from None
    try:
        _probe(path, role)
    except InputError:
        raise
    except Exception as exc:
        unanswered = {cls.__name__ for cls in type(exc).__mro__} & UNREACHABLE
        raise (UnreachableError if unanswered else InputError)(
            f"{path}: {_explain(exc, kind)}"
        ) from exc


def unserved(path: str) -> str | None:
    """Why the store of URL `path` did not serve its first bytes (one line: `NOT_FOUND`, or the
    network, a server error, refused credentials), or None when it did."""
    try:
        fs, root = _filesystem(path, **_fail_fast(path))
        fs.cat_file(root, start=0, end=16)
    except Exception as exc:
        return _explain(exc, _scheme(path))
    return None


PATTERN = re.compile(r"[*?\[]")


def expand_pattern(path: str) -> list[str]:
    """The files a glob pattern matches, sorted (`scenes/*.tif`, `s3://bucket/2024-*/*.tif`;
    `**` for any folders): Prefect parameters and YAML reach here without a shell to expand
    them. A path without `*`, `?` or `[`, a local file named so, and a GDAL virtual path are
    kept as they are. InputError (naming the problem, not the path) when nothing matches or
    the store refuses the listing."""
    first = PATTERN.search(path)
    if first is None or path.startswith("/vsi") or Path(path).exists():
        return [path]
    check_storage(path[: first.start()].rsplit("/", 1)[0], "input")
    fs, root = _filesystem(path)
    try:
        found = sorted(name for name in fs.glob(root) if fs.isfile(name))
    except Exception as exc:  # a listing the store refuses (permissions, an HTTP URL)
        raise InputError(_explain(exc, _scheme(path))) from exc
    if not found:
        raise InputError("no file matches this pattern")
    return [fs.unstrip_protocol(name) if is_url(path) else name for name in found]


def gdal_path(path: str) -> str:
    """The path GDAL opens for `path`: s3://b/k -> /vsis3/b/k, gs:// -> /vsigs/, az:// and
    abfs://container[@account.host]/k -> /vsiaz/container/k, http(s):// -> /vsicurl/URL."""
    if not is_url(path):
        return path
    kind = _scheme(path)
    if kind not in SCHEMES:
        raise InputError(f"{path}: unsupported storage scheme {kind}://")
    prefix = SCHEMES[kind][0]
    if kind in READ_ONLY:
        return prefix + path
    parts = urlsplit(path)
    container = parts.netloc.split("@", 1)[0]
    return f"{prefix}{container}{parts.path}"


def gdal_env(path: str) -> dict[str, str]:
    """GDAL configuration for reading `path` (for `rasterio.Env(**gdal_env(path))`).

    URLs and VRTs (which may stack windows of URLs, or mosaic them) get `REMOTE_GDAL_ENV`, and
    a VRT the settings of every store below. For s3:// with
    `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` set (MinIO, moto, Ceph...): the endpoint's host,
    plain HTTP when it says http://, and path-style addressing. For az://, adlfs's account
    variables under GDAL's names. Credentials GDAL reads from the environment
    itself (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, ...).
    """
    vrt = path.lower().endswith(".vrt")  # its sources may be in any store
    env = dict(REMOTE_GDAL_ENV) if is_url(path) or vrt else {}
    kind = _scheme(path)
    if kind == "s3" or vrt:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            env["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
            env["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
            env["AWS_VIRTUAL_HOSTING"] = "FALSE"
    if kind in ("az", "abfs") or vrt:
        for adlfs_name, gdal_name in (
            ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY"),
        ):
            if adlfs_name in os.environ and gdal_name not in os.environ:
                env[gdal_name] = os.environ[adlfs_name]
    return env


def exists(path: str) -> bool:
    """Whether a file (object) or folder (prefix) exists at `path`."""
    if not is_url(path):
        return Path(path).exists()
    fs, root = _filesystem(path)
    return bool(fs.exists(root))


def modified(path: str) -> dt.datetime | None:
    """When the file (object) at `path` was last written, in UTC; None when there is none."""
    try:
        if not is_url(path):
            return dt.datetime.fromtimestamp(Path(path).stat().st_mtime, dt.UTC)
        fs, root = _filesystem(path)
        stamp = fs.modified(root)
    except FileNotFoundError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def read_text(path: str) -> str | None:
    """The text of the file at `path`, or None when there is none."""
    try:
        if not is_url(path):
            return Path(path).read_text(encoding="utf-8")
        fs, root = _filesystem(path)
        with fs.open(root, "rb") as f:
            return bytes(f.read()).decode()
    except FileNotFoundError:
        return None


def read_json(path: str) -> Any | None:
    """The JSON document at `path`, or None when there is none (e.g. a manifest not written
    yet); a document that is not valid JSON is treated as absent too."""
    text = read_text(path)
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def upload(local: Path, url: str) -> str:
    """Copy the local file to `url` as one object (readers never see a part of it), check its
    size, and return `url`."""
    fs, target = _filesystem(url)
    fs.put_file(str(local), target)
    if fs.size(target) != local.stat().st_size:
        raise OSError(f"{url}: upload incomplete")
    return url


def list_files(path: str, pattern: str = "*.tif") -> dict[str, str]:
    """Files matching `pattern` under folder or prefix `path` (or `path` itself when it is a
    file) -> a version tag that changes when the file does: the store's ETag (quotes removed),
    else size and modification time. Keys are URLs for URLs, plain paths for local paths."""
    fs, root = _filesystem(path)
    found = [root] if fs.isfile(root) else fs.glob(join(root, pattern))
    files = {}
    for name in sorted(found):
        info = fs.info(name)
        if info.get("type") != "file":
            continue
        etag = info.get("ETag") or info.get("etag")
        modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        version = str(etag).strip('"') if etag else f"{info.get('size')}-{modified}"
        files[fs.unstrip_protocol(name) if is_url(path) else name] = version
    return files


class StagedOutput:
    """Outputs bound for folder `url`, written locally first and uploaded when complete.

    For a URL, `folder` is a local staging folder keyed by the URL under the staging root
    (`CONVLORA_GEO_STAGING`, else `$XDG_CACHE_HOME/convlora-geo/staging`, else
    `~/.cache/convlora-geo/staging`): an interrupted run leaves its work there and the next
    run for the same URL resumes from it. For a local path, `folder` is that path and
    `publish` leaves the files where they are.

    Atomicity: each file becomes one object, written by one PUT (or one multipart upload for
    large files, which appears only when completed), so readers see either no object or the
    whole new one, and S3 reads after a write see the new object. There is no atomic commit
    across objects: publish the file that marks a set complete (a manifest) last. Several
    processes may stage into the same URL at once if they write different names.
    """

    def __init__(self, url: str, staging_root: str | Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.remote = is_url(url)
        if self.remote:
            digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
            name = re.sub(r"[^A-Za-z0-9._-]", "_", self.url.rsplit("/", 1)[-1])
            self.folder = Path(staging_root or _staging_root()) / f"{name}-{digest}"
        else:
            self.folder = Path(url)

    def __enter__(self) -> StagedOutput:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """After success, remove the staging folder if nothing is left in it; after a failure
        keep it, so that the next run resumes."""
        if self.remote and exc_type is None:
            # not empty: unpublished files, or another run's work in progress
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def publish(self, names: Sequence[str]) -> list[str]:
        """Upload `folder/NAME` to `url/NAME` for each name, in this order, check each object's
        size, then delete the local copies (only once all are up, so a run stopped half-way
        publishes again from complete local files). The last name's object (a manifest, which
        marks the set complete) goes first, so a set half replaced is never taken for finished.
        Returns where the files now are."""
        if not self.remote:
            return [str(self.folder / name) for name in names]
        fs, last = _filesystem(join(self.url, names[-1]))
        if fs.exists(last):
            fs.rm_file(last)
        published = [upload(self.folder / name, join(self.url, name)) for name in names]
        for name in names:
            (self.folder / name).unlink()
        return published


def _staging_root() -> Path:
    """Where `StagedOutput` stages URLs' files unless told otherwise."""
    if root := os.environ.get("CONVLORA_GEO_STAGING"):
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "convlora-geo" / "staging"


def _filesystem(path: str, **options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """A fresh fsspec filesystem for `path` without cached listings (scenes arrive while
    workers run), and the path in that filesystem's terms."""
    return fsspec.core.url_to_fs(
        path, skip_instance_cache=True, use_listings_cache=False, **options
    )


def _probe(path: str, role: str) -> None:
    """Ask the store about `path` once, failing fast: an input must exist; an input folder, an
    output folder or file need only their bucket or container (an output must not be a file,
    an output file not a folder)."""
    fs, root = _filesystem(path, **_fail_fast(path))
    if role == "input":
        fs.info(root)
        return
    try:
        is_file = fs.info(root)["type"] == "file"
    except FileNotFoundError:
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            raise InputError(f"{path}: bucket or container {bucket} not found") from None
        if role == "input folder":
            log.info("%s: nothing there yet (object storage has no empty folders)", path)
        return
    if role == "output" and is_file:
        raise InputError(f"{path}: exists and is not a folder")
    if role == "output file" and not is_file:
        raise InputError(f"{path}: is a folder; give a file name")


def _fail_fast(path: str) -> dict[str, Any]:
    """fsspec options that ask the store of `path` at most twice (S3 retries 5 times by default)."""
    return {"config_kwargs": {"retries": {"max_attempts": 2}}} if _scheme(path) == "s3" else {}


def _explain(exc: BaseException, kind: str) -> str:
    """One line for a failed probe of a `kind`:// URL."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & NO_CREDENTIALS:
        return f"no credentials for {kind}:// (see the cloud settings in infra/README.md)"
    if names & UNREACHABLE:
        return f"cannot reach the storage endpoint ({exc})"
    if isinstance(exc, FileNotFoundError):
        return NOT_FOUND
    if isinstance(exc, PermissionError):
        return "access denied (check the credentials' permissions)"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"cannot be accessed ({type(exc).__name__}: {first_line})"
