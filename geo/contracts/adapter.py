"""What fine-tuning hands to prediction and evaluation: an adapter's metadata (`adapter.json`).

`convlora.save_adapter` writes the model part (format, model config, base SAM checksum); the
geo part below rides along as its metadata: the classes (and the class map with the label values
they came from), the source bands and their statistics, and the tile grid the model was trained
on. `AdapterMetadata.read` parses and checks both once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convlora.adapter_files import LATEST_DIR, METADATA_NAME, WEIGHTS_NAME, read_metadata
from convlora.config import ModelConfig
from convlora.errors import ConvLoRAInputError
from geo.contracts.classes import ClassInfo, ClassMap, load_class_map, parse_class_list
from geo.contracts.normalization import Normalization
from geo.contracts.tile_store import StoreInfo, is_tile_store, metadata_file
from geo.errors import InputError
from geo.io.outputs import read_json_object

log = logging.getLogger(__name__)
RUN_CONFIG = "config.json"  # a training run's settings, the SAM checkpoint's path among them


@dataclass(frozen=True)
class AdapterMetadata:
    """The parsed `adapter.json` of a training run (or of its `last/` checkpoint)."""

    path: Path  # the adapter.json file
    model: ModelConfig
    sam_checkpoint_sha256: str | None
    classes: tuple[ClassInfo, ...]
    bands: tuple[int, ...]  # 1-based source band indexes, in model input order
    band_names: tuple[str, ...]
    normalization: Normalization
    tile_size: int  # the tile side of the store the model was trained on
    overlap: int
    store_fingerprint: str | None = None
    dtype: str | None = None  # the training scenes' pixel type
    pixel_size_m: float | None = None  # their pixel side in metres (None without a CRS)
    scene_band_count: int | None = None  # their bands, all of them (None: not recorded, or mixed)
    training: dict[str, Any] = field(default_factory=dict)  # step, epoch, validation metrics
    georeferenced: bool | None = None  # the training scenes had a CRS (None: not recorded)
    class_map: ClassMap | None = None  # with label values (None: a model saved without them)

    @property
    def image_size(self) -> int:
        """The side SAM's encoder sees (tiles are resized to it, as in training)."""
        return self.model.image_size

    @property
    def label(self) -> str:
        """A short model name for outputs: SAM variant and adapter kind."""
        return f"convlora-{self.model.sam_variant}-{self.model.adapter}"

    @staticmethod
    def from_store(store: StoreInfo) -> dict[str, Any]:
        """The geo part of the metadata of a model trained on `store` (JSON-ready)."""
        return {
            "classes": [c.to_dict() for c in store.classes],
            "class_map": store.class_map.to_dict(),
            "bands": list(store.bands),
            "band_names": list(store.band_names),
            "normalization": store.normalization.to_dict(),
            "tile_size": store.tile_size,
            "overlap": store.overlap,
            "store_fingerprint": store.fingerprint,
            "dtype": store.dtype,
            "pixel_size_m": store.pixel_size_m,
            "scene_band_count": store.scene_band_count,
            "georeferenced": any(scene.crs for scene in store.scenes),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any], path: Path) -> AdapterMetadata:
        """Parse an adapter.json document; InputError naming `path` when it is incomplete."""
        source = str(path)
        missing = [
            k for k in ("config", "classes", "bands", "normalization", "tile_size")
            if k not in document
        ]  # fmt: skip
        if missing:
            raise InputError(
                f"{source}: no {', '.join(missing)} in the adapter metadata "
                "(was it written by `convlora-geo train`?)"
            )
        try:
            model = ModelConfig.from_dict(dict(document["config"]))
        except (ConvLoRAInputError, TypeError) as err:
            raise InputError(f"{source}: invalid model config ({err})") from None
        classes = parse_class_list(list(document["classes"]), source)
        try:
            bands = tuple(int(b) for b in document["bands"])
            tile_size = int(document["tile_size"])
            overlap = int(document.get("overlap", tile_size // 8))
        except (TypeError, ValueError) as err:
            raise InputError(f"{source}: invalid bands or tile size ({err})") from None
        normalization = Normalization.from_dict(document["normalization"], source)
        if normalization.bands != len(bands) or model.in_channels != len(bands):
            raise InputError(
                f"{source}: {len(bands)} bands {list(bands)} but the model takes "
                f"{model.in_channels} and the statistics cover {normalization.bands}"
            )
        if model.num_outputs != len(classes):
            raise InputError(
                f"{source}: {len(classes)} classes but the model predicts {model.num_outputs}"
            )
        names = document.get("band_names") or [""] * len(bands)
        class_map = None
        if document.get("class_map") is not None:
            class_map = ClassMap.from_dict(document["class_map"], source)
            if [c.name for c in class_map.classes] != [c.name for c in classes]:
                raise InputError(f"{source}: its class map names other classes than its classes")
        return cls(
            path=path,
            model=model,
            sam_checkpoint_sha256=document.get("sam_checkpoint_sha256"),
            classes=classes,
            bands=bands,
            band_names=tuple(str(n) for n in names),
            normalization=normalization,
            tile_size=tile_size,
            overlap=overlap,
            store_fingerprint=document.get("store_fingerprint"),
            dtype=document.get("dtype"),
            pixel_size_m=document.get("pixel_size_m"),
            scene_band_count=_optional_int(document.get("scene_band_count"), source),
            training=dict(document.get("training") or {}),
            georeferenced=_optional_bool(document.get("georeferenced"), source),
            class_map=class_map,
        )

    @classmethod
    def read(cls, model_path: str | Path) -> AdapterMetadata:
        """The metadata of a run folder or adapter file; InputError when it is unusable."""
        folder = Path(model_path)
        if not folder.exists():
            raise InputError(f"{model_path}: model not found (give a run folder or adapter file)")
        folder = folder if folder.is_dir() else folder.parent
        try:
            document = read_metadata(model_path)
        except ConvLoRAInputError as err:
            raise InputError(str(err)) from None
        return cls.from_document(document, folder / METADATA_NAME)


def run_folder(model: str | Path) -> Path:
    """The training run a model belongs to: the run folder given, the one holding an adapter
    file, or the run of a `last/` checkpoint."""
    folder = Path(model) if Path(model).is_dir() else Path(model).parent
    return folder.parent if folder.name == LATEST_DIR else folder


def run_config(model: str | Path) -> dict[str, Any]:
    """The settings of the run a model belongs to (its `config.json`; {} when there is none)."""
    return read_json_object(run_folder(model) / RUN_CONFIG)


def trained_sam_checkpoint(model: str) -> str | None:
    """The SAM checkpoint file the model at `model` (a run folder, its `last/` checkpoint or an
    adapter file) was trained on, as its run's config.json names it, while that file is still
    there (said in the log); None for a model trained without one or not readable (its checks
    say why later)."""
    try:
        sha = read_metadata(model).get("sam_checkpoint_sha256")
    except (ConvLoRAInputError, OSError, ValueError):
        return None
    config = run_config(model)
    path = str(config.get("sam_checkpoint") or "")
    if not sha or config.get("sam_checkpoint_sha256") != sha or not Path(path).is_file():
        return None
    log.info("%s: SAM checkpoint %s, the one it was trained on", model, path)
    return path


def with_trained_sam_checkpoint(values: Any, *, model_key: str = "model") -> Any:
    """A config's values (of predict, evaluate; of finetune with `model_key` init_from) whose
    missing `sam_checkpoint` is the one its model was trained on, where that file still lies (a
    "before" model validator)."""
    if not isinstance(values, dict) or values.get("sam_checkpoint") or not values.get(model_key):
        return values
    path = trained_sam_checkpoint(str(values[model_key]))
    return values if path is None else {**values, "sam_checkpoint": path}


def _optional_bool(value: object, source: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"{source}: georeferenced must be true or false, not {value!r}")


def _optional_int(value: object, source: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise InputError(f"{source}: scene_band_count must be a positive whole number, not {value!r}")


def class_map_of(path: str, *, names_only: bool = True) -> ClassMap:
    """A class map file; or the class map of a tile store (STORE.zarr: its classes with their
    label values, as it was tiled) or of a model (a run folder, adapter.json or
    adapter.safetensors: the class map of the store it was trained on). With `names_only`, a
    model saved without label values gives its classes alone; otherwise it is refused."""
    if is_tile_store(path):
        return StoreInfo.read(path).class_map
    if _is_model(path):
        metadata = AdapterMetadata.read(path)
        if metadata.class_map is not None:
            return metadata.class_map
        if not names_only:
            raise InputError(
                f"{path}: this model was saved without the label values of its classes; give "
                "its class map file, or the tile store it was trained on (STORE.zarr)"
            )
        return ClassMap(metadata.classes)
    return load_class_map(path)


def class_map_file(path: str) -> str:
    """The file that holds the class map `class_map_of(path)` reads, which tiling records and
    watches: a tile store's zarr.json, a model's adapter.json, else `path` itself."""
    if is_tile_store(path):
        return str(metadata_file(path))
    if _is_model(path):
        return str((Path(path) if Path(path).is_dir() else Path(path).parent) / METADATA_NAME)
    return path


def _is_model(path: str) -> bool:
    """A run folder (holding adapter.json), or an adapter.json or adapter.safetensors file."""
    return (Path(path) / METADATA_NAME).is_file() or Path(path).name in (
        METADATA_NAME,
        WEIGHTS_NAME,
    )
