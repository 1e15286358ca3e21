"""Prediction in this process: one planned scene, or every scene of a config in turn."""

from __future__ import annotations

from convlora.devices import resolve_device
from geo.predict.config import PredictConfig
from geo.predict.model import load_model
from geo.predict.plan import check_prediction
from geo.predict.run import predict_scene_into
from geo.predict.scene import Scene

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
