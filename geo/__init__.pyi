"""Types of the names `geo` imports on first use (read by lazy_loader and mypy)."""

from .contracts import AdapterMetadata as AdapterMetadata
from .contracts import ClassInfo as ClassInfo
from .contracts import ClassMap as ClassMap
from .contracts import StoreInfo as StoreInfo
from .contracts import load_class_map as load_class_map
from .errors import InputError as InputError
from .evaluate import EvaluateConfig as EvaluateConfig
from .evaluate import evaluate_on_store as evaluate_on_store
from .finetune import FinetuneConfig as FinetuneConfig
from .finetune import check_finetune as check_finetune
from .finetune import train_on_store as train_on_store
from .predict import PredictConfig as PredictConfig
from .predict import check_prediction as check_prediction
from .predict import predict as predict
from .predict import predict_scene as predict_scene
from .tiling import TileConfig as TileConfig
from .tiling import check_tiling as check_tiling
from .tiling import tile_scenes as tile_scenes
from .vectorize import polygonize as polygonize
