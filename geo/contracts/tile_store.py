"""The tile store: what tiling hands to fine-tuning and evaluation.

A Zarr 3 group (one tile per chunk, so tasks write distinct tiles concurrently; chunk files side
by side, `images/c.7.0.0.0`), readable with plain `zarr` and `xarray.open_zarr` (consolidated
metadata):

- `images` (N, C, T, T), source dtype: tile pixels, padding and invalid pixels hold the fill value
- `labels` (N, T, T) uint8: class ids, 255 = ignore (invalid, outside the labelled area, unmapped)
- `valid` (N, T, T) bool: True where the scene has data (inside the scene, not nodata); its fill
  value is True, so the tiles that are valid everywhere (most) have no chunk file
- `split` (N,) uint8: 0 train, 1 validation (2 buffer: in stores tiled before version 3)
- `scene` (N,) int32: index into the `scenes` attribute
- `window` (N, 4) int64: (col_off, row_off, width, height) of the tile in its scene's pixels
- `tile_index.gpkg`: one row per tile (scene, window, bounds, CRS, split, label coverage)

The group attributes are `StoreInfo`, parsed and validated once by `StoreInfo.read`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyogrio
import zarr
from zarr.codecs import BloscCodec
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

from geo.contracts.classes import ClassInfo, ClassMap, parse_class_list
from geo.contracts.normalization import Normalization
from geo.errors import InputError

FORMAT = "convlora-tiles/1"
TILE_INDEX = "tile_index.gpkg"
TILE_INDEX_LAYER = "tiles"  # beside QGIS's layer_styles: read it by name
TRAIN, VAL, BUFFER = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VAL: "val", BUFFER: "buffer"}
SPLITS: dict[str, tuple[int, ...]] = {"train": (TRAIN,), "val": (VAL,), "all": (TRAIN, VAL, BUFFER)}


@dataclass(frozen=True)
class SceneRecord:
    """A scene a store's tiles came from: its grid and the store indexes of its tiles."""

    path: str
    crs: str | None  # WKT
    transform: tuple[float, ...]
    width: int
    height: int
    dtype: str
    nodata: float | None
    tiles: tuple[int, int]  # first, last + 1
    count: int | None = None  # its bands, all of them (None: a store from before it was kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "crs": self.crs, "transform": list(self.transform),
            "width": self.width, "height": self.height, "dtype": self.dtype,
            "nodata": self.nodata, "tiles": list(self.tiles), "count": self.count,
        }  # fmt: skip


@dataclass(frozen=True)
class StoreInfo:
    """A tile store's attributes: its grid, bands, classes, statistics, split and provenance."""

    path: Path
    tile_size: int
    overlap: int
    bands: tuple[int, ...]  # 1-based source band indexes, in store order
    band_names: tuple[str, ...]  # band descriptions ("" where a scene has none)
    band_colors: tuple[str, ...]  # GDAL colour interpretation per band ("red", "gray", ...)
    dtype: str
    class_map: ClassMap
    normalization: Normalization
    n_tiles: int
    split_counts: dict[str, int]
    class_pixels: dict[str, tuple[int, ...]]  # per split name, pixels of each class
    scenes: tuple[SceneRecord, ...]
    fingerprint: str
    pixel_size_m: float | None = None  # median pixel side of the scenes (None without a CRS)
    settings: dict[str, Any] = field(default_factory=dict)  # the tiling settings (provenance)
    inputs: tuple[dict[str, Any], ...] = ()  # path and sha256 of every input

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return self.class_map.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def scene_band_count(self) -> int | None:
        """How many bands its scenes have, where they all have as many (None: they differ, or
        the store is from before it was kept)."""
        counts = {scene.count for scene in self.scenes}
        return counts.pop() if len(counts) == 1 else None

    def to_attrs(self) -> dict[str, Any]:
        """The JSON attributes written into the store (the inverse of `from_attrs`)."""
        return {
            "format": FORMAT,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "bands": list(self.bands),
            "band_names": list(self.band_names),
            "band_colors": list(self.band_colors),
            "dtype": self.dtype,
            "classes": [c.to_dict() for c in self.classes],
            "class_map": self.class_map.to_dict(),
            "normalization": self.normalization.to_dict(),
            "n_tiles": self.n_tiles,
            "split_counts": dict(self.split_counts),
            "class_pixels": {k: list(v) for k, v in self.class_pixels.items()},
            "scenes": [s.to_dict() for s in self.scenes],
            "fingerprint": self.fingerprint,
            "pixel_size_m": self.pixel_size_m,
            "settings": self.settings,
            "inputs": list(self.inputs),
        }

    @classmethod
    def from_attrs(cls, path: str | Path, attrs: Mapping[str, Any]) -> StoreInfo:
        """Parse and check a store's attributes; InputError naming the store when they are
        incomplete or inconsistent."""
        source = str(path)
        try:
            class_map = ClassMap.from_dict(attrs["class_map"], source=source)
            bands = tuple(int(b) for b in attrs["bands"])
            info = cls(
                path=Path(path),
                tile_size=int(attrs["tile_size"]),
                overlap=int(attrs["overlap"]),
                bands=bands,
                band_names=tuple(str(n) for n in attrs.get("band_names", [""] * len(bands))),
                band_colors=tuple(str(c) for c in attrs.get("band_colors", [])),
                dtype=str(attrs["dtype"]),
                class_map=class_map,
                normalization=Normalization.from_dict(attrs["normalization"], source),
                n_tiles=int(attrs["n_tiles"]),
                split_counts={str(k): int(v) for k, v in attrs["split_counts"].items()},
                class_pixels={
                    str(k): tuple(int(x) for x in v) for k, v in attrs["class_pixels"].items()
                },
                scenes=tuple(
                    SceneRecord(
                        path=str(s["path"]),
                        crs=s.get("crs"),
                        transform=tuple(float(x) for x in s["transform"]),
                        width=int(s["width"]),
                        height=int(s["height"]),
                        dtype=str(s["dtype"]),
                        nodata=s.get("nodata"),
                        tiles=(int(s["tiles"][0]), int(s["tiles"][1])),
                        count=None if s.get("count") is None else int(s["count"]),
                    )  # fmt: skip
                    for s in attrs["scenes"]
                ),
                fingerprint=str(attrs["fingerprint"]),
                pixel_size_m=attrs.get("pixel_size_m"),
                settings=dict(attrs.get("settings", {})),
                inputs=tuple(attrs.get("inputs", [])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(
                f"{source}: tile store attributes are incomplete or damaged ({err!r}); "
                "tile it again with `convlora-geo tile`"
            ) from None
        parse_class_list(attrs.get("classes", info.class_map.to_list()), source)
        if info.normalization.bands != len(bands):
            raise InputError(f"{source}: band statistics do not match its {len(bands)} bands")
        return info

    @classmethod
    def read(cls, path: str | Path) -> StoreInfo:
        """The StoreInfo of the tile store at `path`; InputError when it is none."""
        attrs = read_attrs(path)
        if attrs is None:
            raise InputError(f"{path}: not a tile store (build one with `convlora-geo tile`)")
        return cls.from_attrs(path, attrs)


def _codec() -> BloscCodec:
    """LZ4 with bit shuffle: on 1024 px tiles of a Landsat mosaic (int16) it compressed at
    766 MB/s where Zstd level 1 with byte shuffle managed 203 MB/s, for a 16 % larger store
    (ratio 1.47 against 1.70); tiling is bound by compression, training reads decode faster."""
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


FLAT_CHUNK_KEYS = DefaultChunkKeyEncoding(separator=".")
"""Chunk files named `c.7.0.0.0` side by side, not `c/7/0/0/0`: a tile is one file, not a file
and three folders (creating a file or a folder took about 1.3 ms on the ext4 disk of the 2-core
VM, and costs more on network file systems: for the 361 tiles of 256 px of a 4096 px scene, up
to 1,083 files and 2,527 folders of nested keys took longer than encoding and writing pixels)."""


def create_store(
    path: str | Path,
    n_tiles: int,
    n_bands: int,
    tile_size: int,
    dtype: str,
    fill: float,
    index: dict[str, np.ndarray],
) -> None:
    """Create the empty tile arrays and write the per-tile `split`, `scene` and `window` arrays."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    t = tile_size
    specs = {
        "images": ((n_tiles, n_bands, t, t), dtype, fill, ("tile", "band", "y", "x")),
        "labels": ((n_tiles, t, t), "uint8", 255, ("tile", "y", "x")),
        "valid": ((n_tiles, t, t), "bool", True, ("tile", "y", "x")),  # all valid: no file
    }
    for name, (shape, dt, fv, dims) in specs.items():
        group.create_array(
            name,
            shape=shape,
            dtype=dt,
            chunks=(1, *shape[1:]),
            fill_value=fv,
            compressors=_codec(),
            chunk_key_encoding=FLAT_CHUNK_KEYS,
            dimension_names=dims,
        )
    index_dims = {"split": ("tile",), "scene": ("tile",), "window": ("tile", "xywh")}
    for name, values in index.items():
        arr = group.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            chunks=values.shape,
            compressors=_codec(),
            dimension_names=index_dims[name],
        )
        arr[...] = values


def open_arrays(
    path: str | Path, mode: Literal["r", "r+"] = "r+"
) -> tuple[zarr.Array[Any], zarr.Array[Any], zarr.Array[Any]]:
    """The `images`, `labels` and `valid` arrays of a store (for writing tiles by default)."""
    group = zarr.open_group(str(path), mode=mode)
    return _array(group, "images"), _array(group, "labels"), _array(group, "valid")


def read_split(path: str | Path) -> np.ndarray:
    """The split code of every tile (TRAIN, VAL, BUFFER)."""
    return np.asarray(_array(zarr.open_group(str(path), mode="r"), "split")[:])


def write_split(path: str | Path, split: np.ndarray) -> None:
    """Set every tile's split code."""
    _array(zarr.open_group(str(path), mode="r+"), "split")[:] = split


def label_coverage(path: str | Path) -> np.ndarray:
    """Every tile's share of labelled pixels (0..1, in store order), from the tile index."""
    frame = pyogrio.read_dataframe(
        Path(path) / TILE_INDEX,
        layer=TILE_INDEX_LAYER,
        columns=["tile", "label_coverage"],
        read_geometry=False,
    )
    coverage = np.zeros(len(frame), dtype=np.float64)
    coverage[frame["tile"].to_numpy()] = frame["label_coverage"].to_numpy()
    return coverage


def read_windows(path: str | Path) -> np.ndarray:
    """Every tile's (col_off, row_off, width, height) in its scene's pixels, (N, 4) int64."""
    return np.asarray(_array(zarr.open_group(str(path), mode="r"), "window")[:])


def _array(group: zarr.Group, name: str) -> zarr.Array[Any]:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise InputError(f"{group.store}: {name} is not an array (a damaged tile store?)")
    return node


def metadata_file(path: str | Path) -> Path:
    """The file of a store folder that holds its attributes (Zarr v3's zarr.json)."""
    return Path(path) / "zarr.json"


def is_tile_store(path: str | Path) -> bool:
    """Whether `path` is a folder holding a Zarr group (a tile store, or one being written)."""
    return metadata_file(path).is_file()


def read_attrs(path: str | Path) -> dict[str, Any] | None:
    """A tile store's raw attributes, or None when `path` is not a tile store."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        return None
    attrs = dict(group.attrs)
    return attrs if attrs.get("format") == FORMAT else None


def write_info(path: str | Path, info: StoreInfo) -> None:
    """Set the group attributes of a store from its StoreInfo (one write of its metadata;
    `attrs.update` writes it once per attribute), the store's last metadata write, and
    consolidate its metadata: readers then take the arrays from the group's `zarr.json`
    instead of listing the folder, where `tile_index.gpkg` is no Zarr node (zarr warns about it
    on every `open_zarr` and member listing, and xarray about missing consolidated metadata)."""
    zarr.open_group(str(path), mode="r+").update_attributes(info.to_attrs())
    with warnings.catch_warnings():  # about consolidated metadata in Zarr 3, and the non-Zarr
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)  # files it lists here
        zarr.consolidate_metadata(str(path))
