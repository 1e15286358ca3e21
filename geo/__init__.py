"""convlora-geo's geospatial library: the pipeline's stages as plain functions.

    tiling ─► finetune ─► evaluate
                  │
    predict ◄─────┘ ─► vectorize

Each stage has one frozen, validated config (`TileConfig`, `FinetuneConfig`, `EvaluateConfig`,
`PredictConfig`) from which the CLI and the Prefect flows derive their options; `contracts`
types what one stage hands the next; `io` holds the primitives that know no stage.
"""

from __future__ import annotations

from geo.contracts import AdapterMetadata, ClassInfo, ClassMap, StoreInfo, load_class_map
from geo.errors import InputError
from geo.evaluate import EvaluateConfig, evaluate_on_store
from geo.finetune import FinetuneConfig, check_finetune, train_on_store
from geo.predict import PredictConfig, check_prediction, predict, predict_scene
from geo.tiling import TileConfig, check_tiling, tile_scenes
from geo.vectorize import polygonize

__all__ = [
    "AdapterMetadata",
    "ClassInfo",
    "ClassMap",
    "EvaluateConfig",
    "FinetuneConfig",
    "InputError",
    "PredictConfig",
    "StoreInfo",
    "TileConfig",
    "check_finetune",
    "check_prediction",
    "check_tiling",
    "evaluate_on_store",
    "load_class_map",
    "polygonize",
    "predict",
    "predict_scene",
    "tile_scenes",
    "train_on_store",
]
