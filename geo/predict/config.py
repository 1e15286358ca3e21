"""`PredictConfig`: which scenes to predict with which model, and how outputs are made."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from geo.contracts.adapter import with_trained_sam_checkpoint
from geo.io.grid import overlap_problem
from geo.options import (
    DEVICE_HELP,
    StageConfig,
    absolute_paths,
    check_device,
    distinct_paths,
    flag,
    option,
    pixel_size,
    validates,
)
from geo.vectorize.config import min_area_option, simplify_option


class PredictConfig(StageConfig):
    """Predict scenes into COGs, GeoPackage polygons and QGIS styles (see `geo.predict`)."""

    images: list[str] = option(
        help="scenes to predict: GDAL-readable files, or s3://, gs://, az://, https:// URLs; "
        "a glob pattern ('scenes/*.tif') stands for the files it matches",
        positional=True, metavar="IMAGE", min_length=1,
    )  # fmt: skip
    model: str = option(help="a training run folder (RUN_DIR) or an adapter file")
    out: str = option(help="output folder, or an s3://, gs:// or az:// URL (uploaded when done)")
    sam_checkpoint: str | None = option(
        None,
        help="the base SAM .pth the adapter was trained on (default: the file its training run "
        "read, while it is there)",
        aliases=("--checkpoint",),
    )
    tile_size: int | None = option(
        None, help="window side in px (default: the tile size the model was trained on)"
    )
    overlap: int | None = option(
        None, help="window overlap in px (default: the training overlap, or tile size / 8)"
    )
    batch_size: int | None = option(
        None, help="windows per forward pass (default: 4 on CPU, from free memory on CUDA)", ge=1
    )
    device: str = option("auto", help=DEVICE_HELP)
    compile: bool = option(
        False,
        help="torch.compile the model: faster on GPUs over many windows, after a first batch "
        "that compiles for minutes",
    )
    min_area: float | None = min_area_option()
    simplify: float | None = simplify_option()
    aoi: str | None = option(
        None,
        help="area of interest: polygons in a vector file (any CRS); each scene is cut to their "
        "extent, its outputs are no data outside them, and scenes they miss are left out "
        "(default: none, whole scenes)",
    )
    overwrite: bool = option(
        False, help="replace files at the output names that convlora-geo did not write"
    )
    dask_address: str | None = option(
        None, help="Dask scheduler to run scenes on (default: local processes for several)"
    )

    _images = validates("images", by=distinct_paths)
    _paths = validates("model", "out", "sam_checkpoint", "aoi", by=absolute_paths)
    _tile_size = validates("tile_size", by=pixel_size)
    _device = validates("device", by=check_device)

    _sam_checkpoint = model_validator(mode="before")(with_trained_sam_checkpoint)

    @model_validator(mode="after")
    def _grid(self) -> Self:
        if self.overlap is not None and self.tile_size is not None:
            problem = overlap_problem(self.overlap, self.tile_size)
            if problem:
                raise ValueError(f"{flag('overlap')} {self.overlap}: {problem}")
        return self
