"""Flow parameters, validated before any work starts (pydantic): clear errors, resolved paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _is_remote(path: str) -> bool:
    return path.startswith("/vsi") or "://" in path


def _existing(path: str) -> str:
    """An existing local path, made absolute; GDAL virtual paths and URLs pass unchanged."""
    if _is_remote(path):
        return path
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise ValueError(f"{path}: no such file or directory")
    return str(resolved)


def _output(path: str) -> str:
    """An output location made absolute; its parent must exist or be creatable."""
    resolved = Path(path).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir() and resolved.suffix != ".zarr":
        raise ValueError(f"{path}: exists and is not a folder")
    return str(resolved)


def _check_grid(tile_size: int, overlap: int) -> None:
    """Tiles of a multiple of 16 px (SAM's patch size) that overlap by less than half."""
    if tile_size % 16:
        below = tile_size // 16 * 16
        raise ValueError(
            f"tile_size {tile_size} is not a multiple of 16 (try {below or 16} or {below + 16})"
        )
    if overlap * 2 >= tile_size:
        raise ValueError(
            f"overlap {overlap} must be less than half the tile size {tile_size} "
            f"(at most {(tile_size - 1) // 2})"
        )


ExistingPath = Annotated[str, AfterValidator(_existing)]
OutputPath = Annotated[str, AfterValidator(_output)]


class Params(BaseModel):
    """Base: unknown parameters are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TileParams(Params):
    images: list[ExistingPath] = Field(min_length=1)
    labels: list[ExistingPath] = Field(min_length=1)
    class_map: ExistingPath
    out: OutputPath
    tile_size: int = Field(1024, ge=16, le=4096)
    overlap: int = Field(128, ge=0)
    bands: list[int] | None = None
    label_field: str | None = None
    aoi: ExistingPath | None = None
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    all_touched: bool = False
    unmapped: Literal["ignore", "background"] | None = None
    overwrite: bool = False
    dask_address: str | None = None

    @model_validator(mode="after")
    def _check_grid(self) -> TileParams:
        _check_grid(self.tile_size, self.overlap)
        if len(self.labels) not in (1, len(self.images)):
            raise ValueError("give one vector label file, or one label raster per image")
        return self

    def tiling_args(self) -> dict[str, Any]:
        """The arguments of `geo.tiling.tile_scenes` (and of its pre-flight `check_tiling`)."""
        return self.model_dump(exclude={"dask_address"})

    def check(self) -> None:
        """Pre-flight: every input and the output checked, nothing written (InputError)."""
        from geo.tiling_inputs import check_tiling

        check_tiling(**self.tiling_args())


class TrainParams(Params):
    sam: Literal["vit_b", "vit_l", "vit_h", "tiny"] = "vit_b"
    sam_checkpoint: ExistingPath | None = None
    adapter: Literal["conv-lora", "lora", "decoder", "full"] = "conv-lora"
    rank: int = Field(3, ge=1)
    experts: int = Field(8, ge=1)
    mask_token_init: Literal["copy", "copy+noise"] = "copy"
    image_size: int = Field(1024, ge=64, le=4096)
    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)
    accumulate: int = Field(4, ge=1)
    lr: float = Field(1e-4, gt=0)
    class_weights: list[float] | Literal["auto"] | None = None
    device: str = "auto"

    @model_validator(mode="after")
    def _check_size(self) -> TrainParams:
        if self.image_size % 16:
            raise ValueError(f"image_size {self.image_size} is not a multiple of 16")
        return self

    def check(self, run_dir: str) -> None:
        """Pre-flight: the run folder, image size and SAM checkpoint (InputError)."""
        from geo.training import check_training

        check_training(
            run_dir, sam=self.sam, sam_checkpoint=self.sam_checkpoint, image_size=self.image_size
        )


class PredictParams(Params):
    images: list[ExistingPath] = Field(min_length=1)
    model: ExistingPath
    out: OutputPath
    sam_checkpoint: ExistingPath | None = None
    tile_size: int | None = Field(None, ge=16, le=4096)
    overlap: int | None = Field(None, ge=0)
    batch_size: int = Field(4, ge=1)
    device: str = "auto"
    min_area: float = Field(500.0, ge=0)
    simplify: float = Field(2.0, ge=0)
    dask_address: str | None = None

    @model_validator(mode="after")
    def _check_grid(self) -> PredictParams:
        if self.tile_size is not None:
            _check_grid(self.tile_size, self.overlap or 0)
        return self

    def check(self) -> None:
        """Pre-flight: the adapter, its SAM checkpoint, every scene and the output folder."""
        from geo.predict import check_prediction

        check_prediction(
            self.images, self.model, self.out, sam_checkpoint=self.sam_checkpoint,
            tile_size=self.tile_size, overlap=self.overlap,
        )  # fmt: skip
