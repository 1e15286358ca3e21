"""Types of the names `geo.predict` imports on first use (read by lazy_loader and mypy)."""

from .config import PredictConfig as PredictConfig
from .local import batch_size_for as batch_size_for
from .local import predict as predict
from .local import predict_planned as predict_planned
from .plan import PredictionPlan as PredictionPlan
from .plan import check_prediction as check_prediction
from .run import predict_scene as predict_scene
from .run import predict_scene_into as predict_scene_into
from .scene import Scene as Scene
from .scene import output_paths as output_paths
from .scene import prepare_scene as prepare_scene
