"""The options of each command and flow, derived from the stage configs (no Prefect import, so
`--help` and argument errors stay fast)."""

from __future__ import annotations

from flows.options import Options
from geo.evaluate.config import EvaluateConfig
from geo.finetune.config import FinetuneConfig
from geo.ingest.config import IngestConfig
from geo.predict.config import PredictConfig
from geo.tiling.config import TileConfig
from geo.vectorize.config import VectorizeConfig

TILE = Options((TileConfig,))
FINETUNE = Options(
    (TileConfig, FinetuneConfig),
    shared={(TileConfig, "out"): "store"},
    as_flags=frozenset({"store"}),
    helps={
        "store": "tile store to build from the scenes (reused while they and the tiling options "
        "are unchanged) and train on",
        "overwrite": "replace a tile store at --store that was built from other inputs or settings",
    },
)
TRAIN = Options((FinetuneConfig,))
EVALUATE = Options((EvaluateConfig,))
PREDICT = Options((PredictConfig,))
INGEST = Options((IngestConfig, PredictConfig), skip=frozenset({"images"}))
VECTORIZE = Options((VectorizeConfig,))
