"""Signing STAC items' asset URLs before they are read (`--sign`).

Planetary Computer keeps its assets in Azure Blob Storage, readable only with a short-lived SAS
token that its token service hands out per storage container; the planetary-computer package
gets, caches and renews those tokens and appends them to the asset URLs of an item. Items are
signed when found, then stacked; just before a scene is predicted, tokens that run out soon are
renewed (`geo.io.sas.renew_tokens`), so the last scenes of a long run are read too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from geo.io.sas import PLANETARY_COMPUTER, planetary_computer, token_service_errors

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
    package = planetary_computer()

    def signed(stac_object: Any) -> Any:
        with token_service_errors():
            return package.sign_inplace(stac_object)

    return signed
