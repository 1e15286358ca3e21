"""A scene to predict: checked against the model's metadata, with its windows and output names."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import ClassInfo
from geo.contracts.normalization import Normalization
from geo.errors import InputError
from geo.io.grid import default_overlap, overlap_problem, tile_size_problem
from geo.io.raster import SceneInfo, check_bands, check_has_data, scene_info
from geo.options import flag
from geo.predict.stitch import StitchPlan

log = logging.getLogger(__name__)

OUTPUTS = {
    "classes": "_classes.tif",
    "probability": "_probability.tif",
    "polygons": "_polygons.gpkg",
    "fiboa": "_polygons.parquet",
    "style": "_classes.qml",
    "quicklook": "_quicklook.png",
    "manifest": "_manifest.json",
}


@dataclass(frozen=True)
class Scene:
    """A scene checked against the model's metadata, with its window plan and output name."""

    info: SceneInfo
    name: str  # the output files' stem
    metadata: AdapterMetadata
    plan: StitchPlan
    bands: tuple[int, ...]  # the scene's bands the model reads, in its input order

    @property
    def normalization(self) -> Normalization:
        return self.metadata.normalization

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return self.metadata.classes


def output_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """The files a prediction named `name` writes into `out_dir`, by kind."""
    return {kind: Path(out_dir) / f"{name}{suffix}" for kind, suffix in OUTPUTS.items()}


def output_names(images: Sequence[str]) -> list[str]:
    """Output stems for scenes: the file stem, plus a short hash of the full path for scenes
    whose stems collide (a/x.tif and b/x.tif), so no prediction overwrites another."""
    stems = [Path(p).stem for p in images]
    return [
        s if stems.count(s) == 1 else f"{s}_{hashlib.sha256(p.encode()).hexdigest()[:8]}"
        for s, p in zip(stems, images, strict=True)
    ]


def window_grid(
    metadata: AdapterMetadata, tile_size: int | None, overlap: int | None
) -> tuple[int, int]:
    """Window side and overlap: the training tile grid unless overridden (InputError if bad)."""
    size = metadata.tile_size if tile_size is None else tile_size
    problem = tile_size_problem(size)
    if problem:
        raise InputError(f"{flag('tile_size')} {size}: {problem}")
    if overlap is None:
        overlap = metadata.overlap if size == metadata.tile_size else default_overlap(size)
    problem = overlap_problem(overlap, size)
    if problem:
        raise InputError(f"{flag('overlap')} {overlap}: {problem}")
    return size, overlap


def warn_scale(metadata: AdapterMetadata, size: int) -> None:
    """Warn when windows of `size` px show the model another scale than in training."""
    if size != metadata.tile_size:
        log.warning(
            "%s %d: the model was trained on %d px tiles, each resized to %d px; %d px windows "
            "are seen at %.2fx the training scale",
            flag("tile_size"), size, metadata.tile_size, metadata.image_size, size,
            metadata.tile_size / size,
        )  # fmt: skip


def prepare_scene(
    image: str,
    metadata: AdapterMetadata,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    blend: bool = True,
    name: str | None = None,
) -> Scene:
    """Check a scene against the model (bands, data) and plan its windows; InputError naming
    what is wrong."""
    info = scene_info(image)
    bands = bands_by_name(info, metadata) or list(metadata.bands)
    try:
        check_bands(info, bands)
    except InputError as exc:
        raise InputError(f"{exc}; the model reads bands {bands}: give a scene with them") from None
    size, overlap = window_grid(metadata, tile_size, overlap)
    check_has_data(info, bands)
    plan = StitchPlan(info.width, info.height, size, overlap, blend)
    return Scene(info, name or Path(image).stem, metadata, plan, tuple(bands))


def bands_by_name(info: SceneInfo, metadata: AdapterMetadata) -> list[int] | None:
    """The scene's bands holding the training bands by name (GDAL descriptions, case and spaces
    aside), when every training band has a name found exactly once in the scene and they lie in
    another order than in training (logged); else None: bands are taken by number."""
    trained = [n.strip().lower() for n in metadata.band_names]
    names = [n.strip().lower() for n in info.band_names]
    if len(trained) != len(metadata.bands) or not all(trained):
        return None
    if any(names.count(n) != 1 for n in trained):
        return None
    bands = [names.index(n) + 1 for n in trained]
    if tuple(bands) == metadata.bands:
        return None
    log.info(
        "%s: bands read by name, in training's order: %s",
        info.path,
        ", ".join(f"{n} = band {b}" for n, b in zip(metadata.band_names, bands, strict=True)),
    )
    return bands
