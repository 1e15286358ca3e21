"""Predicting a scene with any probability model (a toy one in most tests) in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geo.contracts.adapter import AdapterMetadata
from geo.predict import predict_scene, prepare_scene
from geo.predict.rows import ProbabilityModel


def predict_image(
    image: Path | str,
    model: ProbabilityModel,
    metadata: AdapterMetadata,
    out: Path,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    blend: bool = True,
    **options: Any,
) -> dict[str, Path]:
    """`prepare_scene` then `predict_scene` (options: batch_size, min_area, progress, ...)."""
    scene = prepare_scene(str(image), metadata, tile_size=tile_size, overlap=overlap, blend=blend)
    return predict_scene(scene, model, out, **{"progress": False, **options})
