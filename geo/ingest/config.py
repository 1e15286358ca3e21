"""`IngestConfig`: where new scenes come from; the prediction options come from `PredictConfig`."""

from __future__ import annotations

from pydantic import field_validator

from geo.io.raster import absolute
from geo.options import StageConfig, option


class IngestConfig(StageConfig):
    """Find scenes this model has not predicted yet (see `geo.ingest.new_scenes`)."""

    source: str = option(
        help="folder, fsspec URL (s3://bucket/prefix, ...) or single scene to watch",
        positional=True, metavar="SOURCE",
    )  # fmt: skip
    pattern: str = option("*.tif", help="file name pattern of scenes under the source")

    @field_validator("source")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        return absolute(path)
