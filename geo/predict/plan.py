"""A prediction run checked once before any work: the model's metadata, every scene against it,
distinct output names, the output folder and the device."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from convlora.errors import ConvLoRAInputError
from geo.contracts.adapter import AdapterMetadata
from geo.errors import InputError, OutsideAreaError
from geo.io.hashing import watched_files
from geo.io.outputs import check_output, check_unlocked, foreign_files, read_json_object
from geo.io.raster import check_exists
from geo.io.scheduler import check_scheduler
from geo.io.storage import check_storage, is_url
from geo.options import checked_once, flag
from geo.predict.config import PredictConfig
from geo.predict.familiar import warn_if_unfamiliar
from geo.predict.scene import (
    AreaOfInterest,
    Scene,
    output_names,
    output_paths,
    prepare_scene,
    warn_scale,
    window_grid,
)

log = logging.getLogger(__name__)

FORMAT_FAMILY = "convlora-geo-prediction/"


@dataclass(frozen=True)
class PredictionPlan:
    """Everything a prediction run needs, checked: the model metadata and the planned scenes."""

    config: PredictConfig
    metadata: AdapterMetadata
    scenes: tuple[Scene, ...]
    out: str  # a folder or an object-storage URL
    warnings: tuple[str, ...] = ()  # scenes unlike the training data, as logged


def _paths(config: PredictConfig) -> list[str]:
    return [
        *watched_files(config.images), config.model, config.sam_checkpoint or "", config.out,
        config.aoi or "",
    ]  # fmt: skip


def check_model(model: str, sam_checkpoint: str | None, device: str) -> AdapterMetadata:
    """The adapter's metadata, with its files, the SAM checkpoint it needs (shapes only) and the
    device checked; InputError naming what is wrong."""
    metadata = AdapterMetadata.read(model)
    from convlora.checkpoint import check_adapter  # the model code: after the cheap checks
    from convlora.devices import resolve_device

    try:
        check_adapter(model, sam_checkpoint, option=flag("sam_checkpoint"))
        resolve_device(device)
    except ConvLoRAInputError as err:
        raise InputError(str(err)) from None
    return metadata


def check_out(out: str) -> str:
    """The output folder or URL, checked (InputError naming it unless outputs can go there)."""
    if is_url(out):
        check_storage(out, "output")
        return out
    return str(check_output(out, into=True))


@checked_once(_paths)
def check_prediction(config: PredictConfig) -> PredictionPlan:
    """Pre-flight check of a prediction run: the model (`check_model`), every scene against it,
    and the output folder or URL. Raises InputError naming the input; writes nothing."""
    out = check_out(config.out)
    check_scheduler(config.dask_address)
    for image in config.images:  # a mistyped scene is reported before the model code loads
        check_storage(image, "input")
        check_exists(image, "image")
    aoi = None if config.aoi is None else AreaOfInterest.read(config.aoi)
    metadata = check_model(config.model, config.sam_checkpoint, config.device)
    size, _ = window_grid(metadata, config.tile_size, config.overlap)
    warn_scale(metadata, size)
    names = output_names(config.images)
    scenes, outside = [], []
    for image, name in zip(config.images, names, strict=True):
        try:
            scene = prepare_scene(
                image, metadata, tile_size=config.tile_size, overlap=config.overlap, name=name,
                aoi=aoi,
            )  # fmt: skip
        except OutsideAreaError:
            outside.append(image)
        else:
            scenes.append(scene)
    if outside:
        if not scenes:
            raise InputError(
                f"{flag('aoi')} {config.aoi}: the area overlaps none of the {len(outside)} "
                "scene(s) (check its CRS and the scenes)"
            )
        shown = ", ".join(outside[:5]) + (", ..." if len(outside) > 5 else "")
        log.warning("%d scene(s) outside %s %s are left out: %s", len(outside), flag("aoi"),
                    config.aoi, shown)  # fmt: skip
    warnings = [warn_if_unfamiliar(scene.info, metadata, scene.bands) for scene in scenes]
    if not is_url(out):
        for scene in scenes:
            check_unlocked(Path(out) / scene.name, "prediction")
            paths = output_paths(out, scene.name)
            for path in paths.values():  # not even --overwrite replaces a folder
                if path.is_dir():
                    raise InputError(f"{path}: a folder where an output file goes; move it away")
            if not config.overwrite:
                foreign_files(list(paths.values()), own_outputs(Path(out), scene.name))
    return PredictionPlan(config, metadata, tuple(scenes), out, tuple(filter(None, warnings)))


def own_outputs(out: Path, name: str) -> set[str]:
    """The file names of a prediction `name` in `out` that an earlier run of this tool wrote:
    those its manifest lists, or all of them while an interrupted run is publishing."""
    paths = output_paths(out, name)
    state = read_json_object(out / f".{name}.partial" / "state.json")
    if state.get("stage") == "publish":
        return {p.name for p in paths.values()}
    manifest = read_json_object(paths["manifest"])
    if not str(manifest.get("format", "")).startswith(FORMAT_FAMILY):
        return set()
    files = {str(o.get("file")) for o in manifest.get("outputs", {}).values()}
    return files | {paths["manifest"].name}
