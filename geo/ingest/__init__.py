"""Ingest: find the scenes a model has not predicted yet, so scheduled runs predict only those."""

from __future__ import annotations

from geo.ingest.catalog import MANIFEST, list_scenes, model_id, read_manifest, write_manifest
from geo.ingest.config import IngestConfig

__all__ = ["MANIFEST", "IngestConfig", "list_scenes", "model_id", "read_manifest", "write_manifest"]
