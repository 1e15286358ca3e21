"""`TileConfig`: everything a user chooses when tiling scenes and labels into a tile store."""

from __future__ import annotations

from typing import Self

from pydantic import field_validator, model_validator

from geo.contracts.classes import UNMAPPED_CHOICES
from geo.io.grid import overlap_problem
from geo.options import (
    StageConfig,
    absolute_paths,
    expanded_paths,
    flag,
    local_path,
    option,
    pixel_size,
    validates,
)


class TileConfig(StageConfig):
    """Scenes and their labels into a Zarr tile store (see `geo.tiling.tile_scenes`)."""

    images: list[str] = option(
        help="GDAL-readable scenes (GeoTIFF, VRT, ...); a glob pattern ('scenes/*.tif') stands "
        "for the files it matches, in name order", positional=True, metavar="IMAGE",
        min_length=1,
    )  # fmt: skip
    labels: list[str] = option(
        help="vector files (GeoPackage, GeoJSON, Shapefile, GeoParquet) whose polygons go "
        "wherever they fall, or one label raster per image, in the same order (patterns as "
        "for IMAGE)",
        metavar="LABEL", min_length=1,
    )  # fmt: skip
    class_map: str | None = option(
        None,
        help="YAML or JSON list of classes (see README: class maps), or a tile store or a "
        "model's run folder whose classes to take (default: for vector files, background and one "
        "class named after the file, or one per --label-field value; for label rasters: "
        "background (code 0) and one class per other code)",
    )
    out: str = option(help="the tile store to write (STORE.zarr)")
    tile_size: int | None = option(
        None,
        help="tile side in px, a multiple of 16 (default: 1024, smaller when the scenes are "
        "too small to give a few tiles)",
    )
    overlap: int | None = option(None, help="overlap between tiles in px (default: tile size / 8)")
    bands: list[int] | None = option(
        None,
        help="1-based source bands to keep, e.g. 4,3,2 (default: all but an alpha band)",
        metavar="B,B,...",
    )
    label_field: str | None = option(
        None,
        help="attribute of the vector labels holding the class (default: none, every polygon "
        "is one class named after its file)",
    )
    label_layer: str | None = option(
        None,
        help="layer of a multi-layer vector file that holds the labels (default: its only "
        "polygon layer)",
    )
    aoi: str | None = option(
        None, help="polygons of the labelled area (default: the extent of the labels)"
    )
    val_fraction: float = option(
        0.2, help="share of tiles in the spatial validation split", ge=0.0, lt=1.0
    )
    all_touched: bool = option(False, help="burn every pixel a label polygon touches")
    unmapped: str | None = option(
        None,
        help="label values in no class: ignore (255) or background (default: the class map's)",
        choices=UNMAPPED_CHOICES,
    )
    split_seed: int = option(0, help="seed of the spatial split and of the statistics sample", ge=0)
    overwrite: bool = option(
        False, help="replace a tile store at --out that was built from other inputs or settings"
    )
    dask_address: str | None = option(
        None, help="Dask scheduler to run on, e.g. tcp://scheduler:8786 (default: local threads)"
    )

    _inputs = validates("images", "labels", by=expanded_paths)
    _local = validates("out", by=local_path)
    _paths = validates("class_map", "aoi", by=absolute_paths)
    _tile_size = validates("tile_size", by=pixel_size)

    @field_validator("bands")
    @classmethod
    def _bands(cls, bands: list[int] | None) -> list[int] | None:
        if bands is not None and (not bands or min(bands) < 1):
            raise ValueError("give 1-based band numbers, e.g. 4,3,2")
        return bands

    @model_validator(mode="after")
    def _grid(self) -> Self:
        if self.overlap is not None and self.tile_size is not None:
            problem = overlap_problem(self.overlap, self.tile_size)
            if problem:
                raise ValueError(f"{flag('overlap')} {self.overlap}: {problem}")
        return self
