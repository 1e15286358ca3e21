"""The region layer of `ingest --region`: the polygons of every scene a model has predicted into
the output folder (on disk or in object storage) as one GeoPackage or fiboa GeoParquet file (on
disk, or uploaded to object storage), rewritten by each run that predicts something
(`geo.vectorize` of their class rasters as one mosaic: fields across the scenes' edges whole,
the newest scene on top where scenes overlap)."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

from geo.errors import InputError
from geo.ingest.records import IngestRecord
from geo.io.outputs import check_output
from geo.io.storage import check_storage, exists, is_url, modified, upload
from geo.options import flag
from geo.predict import PredictConfig
from geo.vectorize import VectorizeConfig, vectorize
from geo.vectorize.config import SUFFIXES

log = logging.getLogger(__name__)


def check_region(region: str) -> None:
    """InputError unless `region` is a .gpkg or .parquet file that can be written, on disk or in
    object storage (written locally, then uploaded)."""
    if is_url(region):
        check_storage(region, "output file")
        name = region.rstrip("/").rsplit("/", 1)[-1]
    else:
        path = check_output(region, into=False, option=flag("region"))
        if path.is_dir():
            raise InputError(f"{flag('region')} {region}: is a folder; give a file name")
        name = path.name
    if not name.lower().endswith(SUFFIXES["gpkg"] + SUFFIXES["parquet"]):
        raise InputError(
            f"{flag('region')} {region}: give a file name ending in .gpkg (GeoPackage) or "
            ".parquet (fiboa GeoParquet)"
        )


def is_stale(region: str, record: IngestRecord) -> bool:
    """Whether the region layer misses a scene of `record`: no file, or one written before the
    last prediction it records (a run whose region write failed, or left it as it was)."""
    try:
        written = modified(region)
    except OSError:  # the store did not answer: try to write it
        return True
    if written is None:
        return True
    return any(_predicted_at(entry) > written for entry in record.done.values())


def _predicted_at(entry: dict[str, object]) -> dt.datetime:
    """When a scene of the record was predicted (its `at`, ISO 8601 to the millisecond; the
    earliest time where an entry has none)."""
    try:
        return dt.datetime.fromisoformat(str(entry["at"]))
    except (KeyError, ValueError):
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def write_region(region: str, record: IngestRecord, predict: PredictConfig) -> str:
    """Vectorise the class rasters of every scene `record` holds as predicted (those still
    there, in the order they were last predicted) into `region`, with the prediction's `min_area`
    and `simplify`; returns what was written, in words. Rasters that do not make one mosaic
    (a damaged class raster) leave the region as it was, with a warning that says why."""
    entries = sorted(record.done.values(), key=_predicted_at)
    outputs = [entry.get("outputs") or {} for entry in entries]
    try:
        return _write(region, outputs, predict)
    except (InputError, OSError) as exc:  # OSError: the store failed; tried again later
        log.warning("%s %s not rewritten: %s", flag("region"), region, exc)
        return f"not rewritten: {exc}"


def _write(region: str, outputs: list[dict[str, str]], predict: PredictConfig) -> str:
    """`write_region` once the outputs are in order; raises what stops it."""
    kept = [o for o in outputs if o.get("classes") and exists(o["classes"])]
    if not kept:
        return "no predicted scene to write"
    with tempfile.TemporaryDirectory(prefix="convlora-geo-region-") as staging:
        local = Path(staging) / Path(region).name if is_url(region) else Path(region)
        config = VectorizeConfig(
            rasters=[o["classes"] for o in kept], out=str(local), overwrite=True,
            scores=[o["probability"] for o in kept] if all(o.get("probability") for o in kept)
            else None, min_area=predict.min_area, simplify=predict.simplify,
        )  # fmt: skip
        result = vectorize(config)
        if is_url(region):
            upload(local, region)  # an OSError leaves the layer to the next run
    total = sum(result["polygons"].values())
    line = f"{total} polygons of {len(kept)} scene(s) in {region}"
    log.info("region layer: %s", line)
    return line
