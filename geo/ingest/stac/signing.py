"""Signing STAC items' asset URLs before they are read (`--sign`).

Planetary Computer keeps its assets in Azure Blob Storage, readable only with a short-lived SAS
token that its token service hands out per storage container; the planetary-computer package
gets, caches and renews those tokens and appends them to the asset URLs of an item. Items are
signed when found, then stacked and predicted in the same run; one whose token has run out by
the time it is read fails, and is signed again on the next run, which retries it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from geo.errors import InputError
from geo.io.storage import EXTRAS_HINT

PLANETARY_COMPUTER = "planetary-computer"
SIGNERS = (PLANETARY_COMPUTER, "none")
PLANETARY_COMPUTER_HOST = "planetarycomputer.microsoft.com"


def signer_name(sign: str | None, stac_url: str) -> str:
    """`--sign` as given, else by the STAC URL: Planetary Computer's own API is signed."""
    if sign is not None:
        return sign
    host = (urlsplit(stac_url).hostname or "").lower()
    return PLANETARY_COMPUTER if host == PLANETARY_COMPUTER_HOST else "none"


def asset_signer(sign: str | None, stac_url: str) -> Callable[[Any], Any] | None:
    """The pystac-client modifier that signs the asset URLs of the items (and item collections)
    it is given, or None where nothing is signed. InputError when the signer is not installed."""
    if signer_name(sign, stac_url) == "none":
        return None
    try:
        with warnings.catch_warnings():  # its pydantic models use v1-style config
            warnings.simplefilter("ignore", DeprecationWarning)
            import planetary_computer
        import requests
    except ImportError:
        raise InputError(
            f"--sign {PLANETARY_COMPUTER}: needs the planetary-computer package, one of the "
            f"cloud extras: {EXTRAS_HINT}"
        ) from None

    def signed(stac_object: Any) -> Any:
        try:
            return planetary_computer.sign_inplace(stac_object)
        except requests.RequestException as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ConnectionError(
                f"--sign {PLANETARY_COMPUTER}: no SAS token for the assets ({first})"
            ) from None

    return signed
