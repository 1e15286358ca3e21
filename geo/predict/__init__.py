"""Prediction: scenes and a trained adapter into class and probability COGs, polygons, styles.

`PredictConfig` holds the options; `check_prediction` checks them once into a plan;
`predict_scene` predicts one planned scene (resumable); `predict` runs a whole config here.
"""

from __future__ import annotations

from convlora.devices import resolve_device
from geo.predict.config import PredictConfig
from geo.predict.model import load_model
from geo.predict.plan import PredictionPlan, check_prediction
from geo.predict.run import predict_scene, predict_scene_into
from geo.predict.scene import Scene, output_paths, prepare_scene

DEFAULT_BATCH = 4


def predict_planned(
    scene: Scene, config: PredictConfig, *, progress: bool = True
) -> dict[str, str]:
    """Predict one scene of a plan with the config's model (loaded once per process) into the
    config's output folder or URL; returns where the outputs are."""
    device = resolve_device(config.device)
    model, record = load_model(config.model, config.sam_checkpoint, device, config.compile)
    return predict_scene_into(
        scene, model, config.out, batch_size=config.batch_size or DEFAULT_BATCH, device=device,
        min_area=config.min_area, simplify=config.simplify, progress=progress,
        model_record=record,
    )  # fmt: skip


def predict(config: PredictConfig, *, progress: bool = True) -> list[dict[str, str]]:
    """Predict every scene of `config` in this process, one after the other."""
    plan = check_prediction(config)
    return [predict_planned(scene, config, progress=progress) for scene in plan.scenes]


__all__ = [
    "PredictConfig",
    "PredictionPlan",
    "Scene",
    "check_prediction",
    "output_paths",
    "predict",
    "predict_planned",
    "predict_scene",
    "predict_scene_into",
    "prepare_scene",
]
