"""Prediction in this process: one planned scene, or every scene of a config in turn."""

from __future__ import annotations

import functools
import logging

import torch

from convlora.devices import inference_batch_size, resolve_device
from convlora.model import SegmentationSAM
from geo.io.sas import renew_tokens
from geo.predict.config import PredictConfig
from geo.predict.model import load_model
from geo.predict.plan import check_prediction
from geo.predict.run import predict_scene_into
from geo.predict.scene import Scene

log = logging.getLogger(__name__)


def batch_size_for(
    chosen: int | None, model: SegmentationSAM, scene: Scene, device: torch.device
) -> int:
    """`--batch-size` when given; else 4 on the CPU and, on CUDA, what fits in free memory
    (measured once per model, bands and tile size in a process, not once per scene)."""
    if chosen:
        return chosen
    return _measured_batch(model, len(scene.bands), scene.plan.tile_size, device)


@functools.lru_cache(maxsize=4)
def _measured_batch(
    model: SegmentationSAM, channels: int, tile_size: int, device: torch.device
) -> int:
    batch = inference_batch_size(model, channels, tile_size, device)
    if device.type == "cuda":
        log.info("%d windows per forward pass, sized to free CUDA memory (--batch-size sets "
                 "it)", batch)  # fmt: skip
    return batch


def predict_planned(
    scene: Scene, config: PredictConfig, *, progress: bool = True
) -> dict[str, str]:
    """Predict one scene of a plan with the config's model (loaded once per process) into the
    config's output folder or URL; returns where the outputs are."""
    if scene.sas_tokens:
        renew_tokens(scene.info.path)
    device = resolve_device(config.device)
    model, record = load_model(config.model, config.sam_checkpoint, device, config.compile)
    batch_size = batch_size_for(config.batch_size, model, scene, device)
    return predict_scene_into(
        scene, model, config.out, batch_size=batch_size, device=device,
        min_area=config.min_area, simplify=config.simplify, progress=progress,
        model_record=record,
    )  # fmt: skip


def predict(config: PredictConfig, *, progress: bool = True) -> list[dict[str, str]]:
    """Predict every scene of `config` in this process, one after the other."""
    plan = check_prediction(config)
    return [predict_planned(scene, config, progress=progress) for scene in plan.scenes]
