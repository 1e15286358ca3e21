"""`IngestConfig`: where new scenes come from (a folder or bucket, or a STAC catalog); the
prediction options come from `PredictConfig`."""

from __future__ import annotations

from typing import Any, Self

from pydantic import model_validator

from geo.errors import InputError
from geo.ingest.stac import StacSource
from geo.ingest.stac.signing import PLANETARY_COMPUTER_HOST, SIGNERS, asset_signer
from geo.io.raster import absolute
from geo.options import StageConfig, absolute_paths, flag, option, validates

STAC_ONLY = (
    "collection", "bbox", "datetime", "query", "bands", "max_items", "sign", "cloud_mask",
)  # fmt: skip


class IngestConfig(StageConfig):
    """Find scenes or STAC items this model has not predicted yet (see `geo.ingest.run`)."""

    source: str | None = option(
        None, help="folder, object-storage URL (s3://bucket/prefix, gs://, az://) or single "
        "scene to watch; or give --stac", positional=True, metavar="SOURCE",
    )  # fmt: skip
    pattern: str = option(
        "*.tif", help="file name pattern of scenes under SOURCE (**/*.tif: subfolders too)"
    )
    stac: str | None = option(
        None,
        help="STAC API URL, or a static catalog (catalog.json, collection.json or item "
        "collection; a path or http(s) URL), to take new items from instead of SOURCE "
        "(default: none, files under SOURCE)",
        metavar="URL",
    )
    collection: str | None = option(
        None,
        help="STAC collection id(s), comma-separated (required for a STAC API; default: none, "
        "every item of a static catalog)",
    )
    bbox: list[float] | None = option(
        None,
        help="area of interest in degrees: west,south,east,north (STAC; default: none, the "
        "--aoi's extent, or every item)",
        metavar="W,S,E,N",
    )  # fmt: skip
    aoi: str | None = option(
        None,
        help="area of interest: polygons in a vector file (any CRS); each scene is cut to their "
        "extent and its outputs are no data outside them, scenes they miss are skipped (and STAC "
        "items searched over them, instead of --bbox) (default: none, whole scenes)",
    )
    datetime: str | None = option(
        None,
        help="time window (STAC): ISO date or interval (2024-06-01/2024-06-30), or relative "
        "to each run (P10D, 'last 10 days') (default: none, any date)",
    )
    query: str | None = option(
        None,
        help="item properties to match (STAC), e.g. 'eo:cloud_cover<20,platform=sentinel-2b' "
        "(default: none, every item)",
    )
    bands: str | None = option(
        None,
        help="asset keys for the model's bands in order, e.g. red,green,blue,nir (default: "
        "none; required with --stac; KEY:N takes band N of a multi-band asset)",
        metavar="KEYS",
    )
    max_items: int | None = option(
        None,
        help="take at most this many items, the newest (STAC; default: none, all of them)",
        ge=1,
        le=10_000,
    )
    sign: str | None = option(
        None,
        help="sign the items' asset URLs before reading them (STAC): planetary-computer gets "
        "Planetary Computer's SAS tokens for its Azure Blob Storage (default: planetary-computer "
        f"for the API on {PLANETARY_COMPUTER_HOST}, else none)",
        choices=SIGNERS,
    )
    cloud_mask: str | None = option(
        None,
        help="cloud mask asset whose clouds, cloud shadows, cirrus and defective pixels become "
        "no data (STAC): a Sentinel-2 scene classification (scl, SCL), Landsat Collection 2 QA "
        "(qa_pixel) or HLS Fmask; or none (default: the item's asset of those keys where it has "
        "one, else none)",
        metavar="ASSET",
    )

    region: str | None = option(
        None,
        help="also keep the polygons of every scene this model has predicted into --out as one "
        "layer in this .gpkg or .parquet file (a path or an object storage URL), rewritten by "
        "each run that predicts (see vectorize: fields across scenes' edges whole, the newest "
        "scene on top) (default: no such layer)",
    )

    _paths = validates("source", "aoi", "region", by=absolute_paths)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.source and self.stac:
            raise ValueError(f"give SOURCE or {flag('stac')}, not both")
        if not self.source and not self.stac:
            raise ValueError(f"give SOURCE (a folder, a scene or a URL) or {flag('stac')} URL")
        if self.source:
            given = [flag(name) for name in STAC_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{given[0]} applies to {flag('stac')} sources only")
            return self
        if not self.bands:
            raise ValueError(
                f"{flag('bands')} is required with {flag('stac')}: name the asset for each band "
                "the model reads, e.g. red,green,blue,nir"
            )
        source = self.stac_source()  # InputError naming the option that is wrong
        asset_signer(self.sign, source.url)  # InputError when the signer is not installed
        return self

    def stac_source(self) -> StacSource:
        """The STAC source of these options (InputError naming a bad one)."""
        if not self.stac:
            raise InputError(f"{flag('stac')} is not given")
        stac = self.stac if "://" in self.stac else absolute(self.stac)
        bbox: Any = None if self.bbox is None else ",".join(f"{v:g}" for v in self.bbox)
        return StacSource(  # it checks the values, naming the options as the CLI spells them
            stac, collections=tuple((self.collection or "").split(",")), bbox=bbox,
            aoi=self.aoi, datetime=self.datetime, query=(self.query,) if self.query else (),
            max_items=self.max_items,
        )  # fmt: skip
