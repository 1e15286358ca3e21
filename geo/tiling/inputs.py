"""Tiling inputs, checked before any work starts: settings, scenes, bands, labels and the output.

`check_tiling` is the pre-flight check the CLI runs before it starts a flow, and the first thing
`geo.tiling.tile_scenes` does (the second call in one process returns the first result while the
inputs are unchanged): it reads metadata, the first and last blocks of each scene, a few windows
to find data, and the label file, and writes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from geo.contracts.adapter import class_map_file, class_map_of
from geo.contracts.classes import ClassMap, value_key
from geo.contracts.tile_store import FORMAT, read_attrs
from geo.errors import InputError
from geo.io.codes import MAX_VALUE_CLASSES
from geo.io.grid import GridSpec, default_overlap, overlap_problem
from geo.io.hashing import fingerprint, input_record, sha256_text, watched_files
from geo.io.outputs import check_output, check_unlocked
from geo.io.raster import (
    SceneInfo,
    alpha_bands,
    band_key,
    bands_named,
    check_bands,
    check_exists,
    check_has_data,
    pixel_size_m,
    same_scale,
    scene_info,
)
from geo.io.scheduler import check_scheduler
from geo.io.vector import aoi_in_scene, field_values, is_vector, load_aoi
from geo.options import checked_once, flag
from geo.tiling import split as splitting
from geo.tiling import stats
from geo.tiling.config import TileConfig
from geo.tiling.existing import kept_fingerprint
from geo.tiling.labels import (
    RasterLabels,
    VectorLabels,
    prepare_raster_labels,
    prepare_vector_labels,
)
from geo.tiling.raster_classes import raster_classes

log = logging.getLogger(__name__)
T = TypeVar("T")

ALGORITHM = {  # part of the fingerprint: bump "version" when tiling output changes
    "version": 4,
    "stats": [
        "tile cores",
        stats.TOTAL_PIXELS,
        stats.MIN_PIXELS,
        stats.CLIP_PERCENTILES,
    ],
    "split": [
        list(splitting.BLOCK_SIDES),
        splitting.MIN_BLOCKS,
        "labelled tiles, masked overlaps",
        f"every class in both splits, of {splitting.ORDERS} block orders",
    ],
}
LabelSource = VectorLabels | RasterLabels
VECTORS_OR_RASTERS = (
    "give vector files (their polygons go wherever they fall), or one label raster per image, "
    "not both"
)
AUTO_TILE_SIZES = (1024, 512, 256)  # SAM's native side, then cheaper ones for small scenes
MIN_AUTO_TILES = 16  # the automatic tile size shrinks until the scenes give this many tiles
MIN_SPLIT_TILES = 9  # or at least this many (a 3 x 3 grid), for a validation split
SMALL_SCENES_TILE_SIZE = 128  # where 256 px tiles are fewer


@dataclass
class TilingRequest:
    """Validated tiling inputs; `reuse` is True when `out` already holds the store to use."""

    config: TileConfig
    out: Path
    cmap: ClassMap
    scenes: list[SceneInfo]
    bands: list[int]
    tile_size: int
    overlap: int
    sources: list[LabelSource]
    settings: dict[str, Any]
    checksums: Future[list[dict[str, Any]]]  # `input_records`, computed while inputs are checked
    kept: str | None = field(default=None)  # the fingerprint of the store at `out`, when kept

    @property
    def scene_bands(self) -> dict[str, list[int]]:
        """The scenes whose bands are read by name at other numbers (`bands_by_name`)."""
        return dict(self.settings.get("scene_bands", {}))

    @property
    def reuse(self) -> bool:
        """Whether `out` already holds the store to use (`geo.tiling.existing`)."""
        return self.kept is not None

    @property
    def store_fingerprint(self) -> str:
        """The fingerprint the store at `out` has once tiled: the kept store's, else this."""
        return self.kept or self.fingerprint

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """Path and sha256 of every input, in a fixed order."""
        return self.checksums.result()

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.inputs, self.settings)

    @cached_property
    def run_key(self) -> str:
        """sha256 of the input paths and every setting, known before the checksums are: it
        names the run's temporary store (`geo.tiling.run`)."""
        paths = input_files(self.config)
        return sha256_text(json.dumps([paths, self.settings], sort_keys=True, default=str))


def auto_tile_size(scenes: list[SceneInfo]) -> int:
    """1024 px (SAM's native size), or the first of 512 and 256 px whose grid gives all scenes
    together MIN_AUTO_TILES tiles; 128 px where 256 px gives fewer than MIN_SPLIT_TILES (a
    scene of 256 x 256 px: one tile, no validation split); never larger than the largest scene
    side (rounded up to 16)."""

    def count(size: int) -> int:
        return sum(len(GridSpec(s.width, s.height, size, default_overlap(size))) for s in scenes)

    size = next((s for s in AUTO_TILE_SIZES if count(s) >= MIN_AUTO_TILES), AUTO_TILE_SIZES[-1])
    if count(size) < MIN_SPLIT_TILES:
        size = SMALL_SCENES_TILE_SIZE
    largest = max(max(s.width, s.height) for s in scenes)
    return min(size, max(16, -(-largest // 16) * 16))


def _default_bands(scene: SceneInfo) -> list[int]:
    """Every band of the first scene but an alpha band (`geo.io.raster.alpha_bands`), which
    masks the pixels it marks transparent instead (`geo.io.raster.read_window`)."""
    alpha = alpha_bands(scene)
    for band in alpha:
        log.info(
            "band %d of %s is an alpha band: it masks transparent pixels and is not tiled "
            "(--bands to choose)",
            band,
            scene.path,
        )
    return [b for b in range(1, scene.count + 1) if b not in alpha]


def input_files(config: TileConfig) -> list[str]:
    """The files whose size and modification time tell whether the inputs changed (a VRT's
    sources and a shapefile's sidecars included; "" for no class map or AOI)."""
    optional = [_class_map_file(config), config.aoi or ""]
    return watched_files([*config.images, *config.labels, *optional])


def _class_map_file(config: TileConfig) -> str:
    """The file holding the class map ("" for none; `class_map_file`)."""
    return "" if config.class_map is None else class_map_file(config.class_map)


def input_records(config: TileConfig) -> list[dict[str, Any]]:
    """Path and sha256 of every input, in a fixed order."""
    roles = [("image", config.images), ("labels", config.labels)]
    roles += [("class_map", [_class_map_file(config)])] if config.class_map else []
    roles += [("aoi", [config.aoi])] if config.aoi else []
    return [input_record(p, role) for role, paths in roles for p in paths]


def _in_background(work: Callable[[], T]) -> Future[T]:
    """`work` started on a daemon thread (a check that fails does not wait for it to end)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="input-checksums", daemon=True).start()
    return future


def _tiling_paths(config: TileConfig) -> list[str]:
    return [*input_files(config), config.out]


@checked_once(_tiling_paths)
def check_tiling(config: TileConfig) -> TilingRequest:
    """Check everything `tile_scenes` needs and return it validated.

    Raises InputError naming the input and the problem; writes nothing. The inputs are hashed
    meanwhile, on another thread (their checksums key the store); the check waits for them only
    when `out` exists (to tell a store of the same inputs, reused, from anything else, refused
    unless `overwrite`).
    """
    check_scheduler(config.dask_address)
    checksums = _in_background(lambda: input_records(config))
    cmap = _class_map(config)
    scenes = [scene_info(p) for p in config.images]
    band_list = list(config.bands) if config.bands else _default_bands(scenes[0])
    for scene in scenes:
        check_bands(scene, band_list)
    scene_bands = bands_by_name(scenes, band_list)
    _warn_other_pixels(scenes)
    _check_crs(scenes)
    for scene in scenes:
        check_has_data(scene, band_list)
    tile_size = config.tile_size or auto_tile_size(scenes)
    if config.tile_size is None:
        log.info("tile size %d px (automatic for these scenes; --tile-size to choose)", tile_size)
    overlap = default_overlap(tile_size) if config.overlap is None else config.overlap
    problem = overlap_problem(overlap, tile_size)
    if problem:
        raise InputError(f"{flag('overlap')} {overlap}: {problem}")
    sources = _prepare_labels(scenes, cmap, config)
    target = check_output(config.out, into=False, option=None)  # `tile --out`, `finetune --store`
    check_unlocked(target, "tile store")
    settings = {
        "format": FORMAT,
        "tile_size": tile_size,
        "overlap": overlap,
        "bands": band_list,
        "label_field": config.label_field,
        "label_layer": config.label_layer,
        "all_touched": config.all_touched,
        "val_fraction": config.val_fraction,
        "split_seed": config.split_seed,
        "class_map": cmap.to_dict(),
        "algorithm": ALGORITHM,
    }
    if any(s.collar is not None for s in scenes):  # stores of scenes without collars keep theirs
        settings["collars"] = [s.collar for s in scenes]
    if scene_bands:  # stores of scenes read by number keep their settings
        settings["scene_bands"] = scene_bands
    request = TilingRequest(
        config, target, cmap, scenes, band_list, tile_size, overlap, sources, settings, checksums
    )
    if target.exists():  # the messages name no flag: `tile --out`, `finetune --store`
        existing = read_attrs(target)
        if existing is None:
            raise InputError(
                f"{config.out}: exists and is not a tile store; write the store elsewhere "
                "(--overwrite replaces only tile stores)"
            )
        request.kept = kept_fingerprint(request, existing)
    return request


def bands_by_name(scenes: list[SceneInfo], bands: list[int]) -> dict[str, list[int]]:
    """The bands of each scene that hold the first scene's tiled bands by name (descriptions,
    case and spaces aside), where they lie at other numbers (a stack of the same assets in
    another order): scene path -> its band numbers, logged. A scene whose bands cannot be
    matched so is read by the same numbers, with a warning where its names say that they hold
    other bands, or where it has another number of bands."""
    first, by_name, renamed, recounted = scenes[0], {}, [], []
    wanted = [first.band_names[b - 1] for b in bands]
    for scene in scenes[1:]:
        found = bands_named(wanted, scene.band_names)
        if found is not None:
            if found != bands:
                by_name[scene.path] = found
                log.info(
                    "%s: bands read by name, as %s has them: %s", scene.path, first.path,
                    ", ".join(f"{first.band_names[b - 1]} = band {f}" for b, f in
                              zip(bands, found, strict=True)),
                )  # fmt: skip
            continue
        pairs = [(b, first.band_names[b - 1], scene.band_names[b - 1]) for b in bands]
        other = [p for p in pairs if _named_otherwise(p[1], p[2])]
        if other:
            renamed.append((scene, other[0]))
        elif scene.count != first.count:
            recounted.append(scene)
    if renamed:
        scene, (band, theirs, its) = renamed[0]
        log.warning(
            "%d scene(s) name their bands otherwise than %s: band %d of %s is %r where it is %r; "
            "bands are read by number, the same from every scene: reorder such a scene's bands "
            "(`gdal_translate -b ...`) or tile it into a store of its own",
            len(renamed), first.path, band, scene.path, its, theirs,
        )  # fmt: skip
    if recounted:
        log.warning(
            "%d scene(s) have another number of bands than %s (%d): %s has %d; bands %s are "
            "read by number from each: check that they hold the same bands",
            len(recounted), first.path, first.count, recounted[0].path, recounted[0].count,
            ", ".join(map(str, bands)),
        )  # fmt: skip
    return by_name


def _named_otherwise(one: str, other: str) -> bool:
    """Whether two band names, both given, name different bands (`band_key`)."""
    return bool(band_key(one) and band_key(other) and band_key(one) != band_key(other))


def _warn_other_pixels(scenes: list[SceneInfo]) -> None:
    """Warn about scenes of one store whose pixels differ in type or size from the first
    scene's: one set of band statistics normalises them all (reflectance of 0..1 beside digital
    numbers of thousands), and the model learns one scale."""
    first = scenes[0]
    typed = [s for s in scenes[1:] if s.dtype != first.dtype]
    if typed:
        log.warning(
            "%d scene(s) hold other pixel types than %s (%s): %s is %s; one set of band "
            "statistics normalises them all: check that their values mean the same",
            len(typed), first.path, first.dtype, typed[0].path, typed[0].dtype,
        )  # fmt: skip
    size = pixel_size_m(first)
    sized = [(s, pixel_size_m(s)) for s in scenes[1:]]
    other = [(s, m) for s, m in sized if size and m and not same_scale(size, m)]
    if other:
        log.warning(
            "%d scene(s) have other pixel sizes than %s (%.3g m): %s has %.3g m; the model learns "
            "objects at several scales (resample them to one pixel size if that is not meant)",
            len(other), first.path, size, other[0][0].path, other[0][1],
        )  # fmt: skip


def _check_crs(scenes: list[SceneInfo]) -> None:
    without = [s.path for s in scenes if s.crs is None]
    if without and len(without) < len(scenes):
        raise InputError(
            f"{without[0]}: has no CRS while other scenes have one; tile them into separate stores"
        )
    if without:
        log.warning(
            "%d scene(s) have no CRS (e.g. %s): their label rasters are paired pixel for pixel",
            len(without),
            without[0],
        )


def _class_map(config: TileConfig) -> ClassMap:
    """The `--class-map`; without one, for vector files, background and one class named after
    the files (or their `--label-layer`), or with `--label-field` one class per distinct value
    of that field (`distinct_values`); for label rasters, the classes of their codes
    (`raster_classes`); said in the log."""
    if config.class_map is not None:
        cmap = class_map_of(config.class_map, names_only=False).with_unmapped(config.unmapped)
        if not any(is_vector(p) for p in config.labels):
            cmap = _codes_as_ids(cmap, config.class_map)
        return cmap
    for path in config.labels:  # a missing file is named before it is taken for a raster
        check_exists(path, "labels file")
    vector = [is_vector(p) for p in config.labels]
    if not any(vector):
        classes = raster_classes(config.labels, _files_name(config.labels))
        said = ", ".join(
            f"{i} {c['name']} (code {c['values'][0]})" for i, c in enumerate(classes[1:], start=1)
        )
    elif not all(vector):
        raise InputError(f"{config.labels[vector.index(True)]}: {VECTORS_OR_RASTERS}")
    elif config.label_field is None:
        classes, said = _file_classes(config.labels, config.label_layer)
    else:
        classes, said = _field_classes(config.labels, config.label_field, config.label_layer)
    log.info("no %s: classes 0 background, %s", flag("class_map"), said)
    return ClassMap.from_dict(classes).with_unmapped(config.unmapped)


def _file_classes(labels: list[str], layer: str | None) -> tuple[list[dict[str, Any]], str]:
    """Background and one class named after the vector files (or their layer), and the log's
    words for it; InputError for files of different names."""
    name = layer or _files_name(labels)
    if name is None:
        raise InputError(
            f"{flag('class_map')}: needed with {len(labels)} vector files of different names "
            f"({_some_names(labels)}), to name their class (one class: a class map of background "
            f"and it; classes per file: merge them with a class attribute for "
            f"{flag('label_field')}; see README: class maps)"
        )
    files = labels[0] if len(labels) == 1 else f"{len(labels)} files: {labels[0]}, ..."
    return [{"name": "background"}, {"name": name}], f"1 {name} (every polygon of {files})"


def _field_classes(
    labels: list[str], field: str, layer: str | None
) -> tuple[list[dict[str, Any]], str]:
    """Background and one class per distinct value of `field`, and the log's words for them;
    InputError for more than `MAX_VALUE_CLASSES` values."""
    values = distinct_values([v for path in labels for v in field_values(path, field, layer)])
    if len(values) > MAX_VALUE_CLASSES:
        raise InputError(
            f"{labels[0]}: {flag('label_field')} {field} holds {len(values)} distinct values, "
            f"too many for classes; give a {flag('class_map')} that groups them"
        )
    _warn_look_alikes(labels[0], field, values)
    background = [v for v in values if _means_background(v, values)]
    objects = [v for v in values if v not in background]
    if not objects:
        raise InputError(
            f"{labels[0]}: every value of {flag('label_field')} {field} is "
            f"{' or '.join(background) or 'missing'}, the background: no class to learn; give a "
            f"{flag('class_map')} that names the class of these features"
        )
    classes = [{"name": "background", **({"values": background} if background else {})}]
    classes += [{"name": v, "values": [v]} for v in objects]
    said = f"one per value of {field}: " + ", ".join(
        f"{i} {v}" for i, v in enumerate(objects, start=1)
    )
    return classes, said


def _warn_look_alikes(path: str, field: str, values: list[str]) -> None:
    """Warn about values that differ only in case (`Pivot`, `pivot`; surrounding spaces are
    not part of a value): each is a class of its own, which a class map can merge."""
    groups: dict[str, list[str]] = {}
    for value in values:
        groups.setdefault(value.casefold(), []).append(value)
    alike = [group for group in groups.values() if len(group) > 1]
    if alike:
        shown = "; ".join(", ".join(repr(v) for v in group) for group in alike[:5])
        log.warning(
            "%s: %s values that differ only in case are separate classes (%s); give "
            "a %s that lists them as one class's values to merge them",
            path, field, shown, flag("class_map"),
        )  # fmt: skip


def _means_background(value: str, values: list[str]) -> bool:
    """Whether a label value names class 0: `background`, or 0 where every value is a number
    (as code 0 is background in label rasters)."""
    if value.lower() == "background":
        return True
    try:
        return float(value) == 0 and all(math.isfinite(float(v)) for v in values)
    except ValueError:
        return False


def _files_name(labels: list[str]) -> str | None:
    """The name the label files share (`scene1/fields.gpkg scene2/fields.gpkg`: fields), None
    when their names differ (they may hold different kinds of objects)."""
    names = {_stem(p) for p in labels}
    return names.pop() if len(names) == 1 else None


def _stem(path: str) -> str:
    return Path(path.split("?")[0].rstrip("/")).stem


def _some_names(labels: list[str]) -> str:
    names = sorted({_stem(p) for p in labels})
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def distinct_values(values: list[Any]) -> list[str]:
    """The distinct label values as class map text (`value_key`), in numeric order when all
    are numbers, else in text order; missing values left out."""
    keys = {k for k in map(value_key, values) if k is not None}
    try:
        return sorted(keys, key=float)
    except ValueError:
        return sorted(keys)


def _codes_as_ids(cmap: ClassMap, path: str) -> ClassMap:
    """The class map for label rasters: where no class lists values, raster code N is class N
    (said in the log)."""
    mapped = cmap.with_codes_as_ids()
    if mapped is not cmap:
        log.info(
            "%s lists no label values: raster code N is class N (%s)",
            path, ", ".join(f"{c.id} {c.name}" for c in cmap.classes),
        )  # fmt: skip
    return mapped


def _prepare_labels(
    scenes: list[SceneInfo], cmap: ClassMap, config: TileConfig
) -> list[LabelSource]:
    """Validate the labels (and AOI) and build one label source per scene."""
    labels, aoi = config.labels, config.aoi
    aoi_frame = load_aoi(aoi) if aoi else None
    areas = [
        aoi_in_scene(aoi_frame, aoi, s) if aoi_frame is not None and aoi else None for s in scenes
    ]
    vector = [is_vector(p) for p in labels]
    if all(vector):
        return list(prepare_vector_labels(
            labels, scenes, cmap, config.label_field, areas, config.all_touched,
            layer=config.label_layer,
        ))  # fmt: skip
    if any(vector):
        bad = labels[vector.index(True)]
        raise InputError(f"{bad}: {VECTORS_OR_RASTERS}")
    if len(labels) != len(scenes):
        raise InputError(
            f"{flag('labels')}: got {len(labels)} label rasters for {len(scenes)} images; a "
            "label raster covers one scene: give one per image, in the same order"
        )
    for name in ("label_field", "label_layer"):
        if getattr(config, name) is not None:
            raise InputError(f"{flag(name)} applies to vector labels, not label rasters")
    rasters: list[LabelSource] = [
        prepare_raster_labels(p, s, cmap, a) for p, s, a in zip(labels, scenes, areas, strict=True)
    ]
    return rasters
