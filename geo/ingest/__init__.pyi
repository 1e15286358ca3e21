"""Types of the names `geo.ingest` imports on first use (read by lazy_loader and mypy)."""

from .config import IngestConfig as IngestConfig
from .records import RECORD_FILE as RECORD_FILE
from .records import IngestRecord as IngestRecord
from .run import IngestPlan as IngestPlan
from .run import IngestResult as IngestResult
from .run import check_ingest as check_ingest
from .run import finish_ingest as finish_ingest
from .run import plan_ingest as plan_ingest
from .run import predict_options as predict_options
from .run import run_ingest as run_ingest
