"""Ingest: find the scenes (files in a folder or bucket, or STAC items) a model has not predicted
yet, so that scheduled runs predict only those; see `geo.ingest.run`."""

from __future__ import annotations

from geo.ingest.config import IngestConfig
from geo.ingest.records import RECORD_FILE, IngestRecord
from geo.ingest.run import (
    IngestPlan,
    IngestResult,
    check_ingest,
    finish_ingest,
    plan_ingest,
    predict_options,
    run_ingest,
)

__all__ = [
    "RECORD_FILE",
    "IngestConfig",
    "IngestPlan",
    "IngestRecord",
    "IngestResult",
    "check_ingest",
    "finish_ingest",
    "plan_ingest",
    "predict_options",
    "run_ingest",
]
