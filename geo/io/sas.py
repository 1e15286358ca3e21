"""Planetary Computer's SAS tokens: signing through the planetary-computer package, and renewing
the tokens in a VRT's source URLs just before the VRT is read.

Planetary Computer keeps its assets in Azure Blob Storage, readable with a short-lived SAS token
(about an hour) that its token service hands out per storage container; the package gets, caches
and renews those tokens. An ingest run signs the items it finds and stacks each into a VRT, but
may predict its last scenes hours later: `renew_tokens` gives a VRT's sources fresh tokens where
theirs run out within RENEW_WITHIN_S, just before its pixels are read.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

from geo.errors import InputError
from geo.io.storage import EXTRAS_HINT
from geo.io.vrt import rewrite_sources

log = logging.getLogger(__name__)
PLANETARY_COMPUTER = "planetary-computer"
RENEW_WITHIN_S = 30 * 60  # a token must outlive the reads of one scene by this much
VSICURL = "/vsicurl/"


def planetary_computer() -> ModuleType:
    """The planetary_computer module; InputError when it is not installed."""
    try:
        with warnings.catch_warnings():  # its pydantic models use v1-style config
            warnings.simplefilter("ignore", DeprecationWarning)
            import planetary_computer
    except ImportError:
        raise InputError(
            f"--sign {PLANETARY_COMPUTER}: needs the planetary-computer package, one of the "
            f"cloud extras: {EXTRAS_HINT}"
        ) from None
    return planetary_computer


@contextmanager
def token_service_errors() -> Iterator[None]:
    """A token service that does not answer, as one ConnectionError line."""
    import requests

    try:
        yield
    except requests.RequestException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConnectionError(
            f"--sign {PLANETARY_COMPUTER}: no SAS token for the assets ({first})"
        ) from None


def token_expiry(url: str) -> dt.datetime | None:
    """When the SAS token in `url` runs out (its `se`), or None for a URL without one."""
    query = parse_qs(urlsplit(url).query)
    if "sig" not in query or "se" not in query:
        return None
    try:
        expiry = dt.datetime.fromisoformat(query["se"][0])
    except ValueError:
        return None
    return expiry if expiry.tzinfo else expiry.replace(tzinfo=dt.UTC)


def without_token(path: str) -> str:
    """`path` (a URL or a GDAL /vsicurl/ path) without its SAS token, if it carries one."""
    prefix, url = _split(path)
    if "sig" not in parse_qs(urlsplit(url).query):
        return path
    return prefix + urlsplit(url)._replace(query="").geturl()


def vrt_without_tokens(path: Path) -> str | None:
    """The VRT's XML with its sources' SAS tokens left out (what it reads, whichever tokens
    sign it), or None where no source carries one."""
    root = ET.parse(path).getroot()
    signed = [node for node in root.iter("SourceFilename") if without_token(node.text or "")
              != node.text]  # fmt: skip
    for node in signed:
        node.text = without_token(node.text or "")
    return ET.tostring(root, encoding="unicode") if signed else None


def _split(path: str) -> tuple[str, str]:
    """(GDAL's /vsicurl/ prefix or "", the URL)."""
    prefix = VSICURL if path.startswith(VSICURL) else ""
    return prefix, path.removeprefix(prefix)


def renew_tokens(vrt: str | Path) -> int:
    """Sign again, with fresh tokens, the sources of the VRT at `vrt` whose SAS tokens run out
    within RENEW_WITHIN_S; returns how many were. ConnectionError when the token service does
    not answer."""
    package = planetary_computer()
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=RENEW_WITHIN_S)
    forgotten = False

    def renewed(source: str) -> str | None:
        nonlocal forgotten
        expiry = token_expiry(_split(source)[1])
        if expiry is None or expiry > soon:
            return None
        if not forgotten:  # the package's cache would hand out the same token again
            cache = package.sas.TOKEN_CACHE  # shared by a worker's threads
            for key, token in list(cache.items()):
                if token.ttl() < RENEW_WITHIN_S:
                    cache.pop(key, None)
            forgotten = True
        prefix, url = _split(without_token(source))
        with token_service_errors():
            return prefix + package.sign_url(url)

    count = rewrite_sources(Path(vrt), renewed)
    if count:
        log.info("%s: SAS tokens of %d source(s) renewed (they ran out soon)", vrt, count)
    return count
