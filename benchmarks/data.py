"""Real scenes for the benchmarks, larger mosaics of them, and untrained models with metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from convlora import ModelConfig, SegmentationSAM, build_model
from geo.contracts.adapter import AdapterMetadata

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
NEBRASKA = DATA / "nebraska_center_pivots_landsat" / "nebraska_landsat_albers_30m.tif"
PIVOTS = DATA / "nebraska_center_pivots_landsat" / "pivots.gpkg"
PIVOTS_MASK = DATA / "nebraska_center_pivots_landsat" / "pivots_mask.tif"
PIVOT_CLASSES = Path(__file__).resolve().parents[1] / "examples" / "pivots_classes.yaml"
RGB_BYTE = DATA / "landsat7_rgb_byte" / "RGB.byte.tif"
FTW_IMAGE = DATA / "ftw_austria_sentinel2" / "austria_s2_2021_winA_winB.tif"
FTW_CLASSES = DATA / "ftw_austria_sentinel2" / "ftw_model_prediction_3class.tif"
CLASSES = [
    {"id": 0, "name": "background", "color": "#000000"},
    {"id": 1, "name": "field", "color": "#33a02c"},
    {"id": 2, "name": "water", "color": "#1f78b4"},
]
SEED = 0


def mosaic(source: Path, dest: Path, times: int, block: int = 256, crop: int | None = None) -> Path:
    """A `times` x `times` mosaic of a real scene (or of its top-left `crop` x `crop` px;
    alternate copies mirrored, so that edges meet), written one copy at a time as a tiled,
    deflate-compressed GeoTIFF. Returns `dest`; an existing `dest` is kept."""
    if dest.exists():
        return dest
    with rasterio.open(source) as src:
        width, height = (crop, crop) if crop else (src.width, src.height)
        profile = {
            **src.profile,
            "driver": "GTiff",
            "width": width * times,
            "height": height * times,
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "compress": "deflate",
        }
        tmp = dest.with_name(dest.name + ".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            for i in range(times):
                for j in range(times):
                    copy = src.read(window=Window(0, 0, width, height))
                    copy = copy[:, ::-1] if i % 2 else copy
                    copy = copy[:, :, ::-1] if j % 2 else copy
                    window = Window(j * width, i * height, width, height)
                    dst.write(np.ascontiguousarray(copy), window=window)
    tmp.rename(dest)
    return dest


def source_megabytes(path: Path) -> float:
    """Uncompressed size of a raster's pixels (all bands), in MB (10^6 bytes)."""
    with rasterio.open(path) as src:
        itemsize = np.dtype(src.dtypes[0]).itemsize
        return src.width * src.height * src.count * itemsize / 1e6


def area_km2(path: Path) -> float:
    """Ground area of a raster in a projected CRS, in km²."""
    with rasterio.open(path) as src:
        return abs(src.transform.determinant) * src.width * src.height / 1e6


def normalization(path: Path, bands: list[int]) -> dict[str, list[float]]:
    """Per-band mean, std, p2, p98 over the valid pixels of a (small) real scene."""
    with rasterio.open(path) as src:
        data = src.read(bands, masked=True).astype("float64")
    flat = [band.compressed() for band in data]
    return {
        "mean": [float(v.mean()) for v in flat],
        "std": [float(v.std()) for v in flat],
        "p2": [float(np.percentile(v, 2)) for v in flat],
        "p98": [float(np.percentile(v, 98)) for v in flat],
    }


def untrained_model(
    variant: str, image_size: int, adapter: str = "conv-lora", num_classes: int = 3
) -> SegmentationSAM:
    """A SegmentationSAM from the registry with random (seeded) weights: there are no official
    SAM checkpoints here, and timing does not depend on the weights' values."""
    torch.manual_seed(SEED)
    cfg = ModelConfig(
        sam_variant=variant, image_size=image_size, adapter=adapter, num_classes=num_classes
    )
    return build_model(cfg).eval()


def metadata_for(model: SegmentationSAM, scene: Path, bands: list[int]) -> AdapterMetadata:
    """Adapter metadata of `model` as if trained on tiles of its image size of scenes like
    `scene`: classes, bands and their statistics."""
    document = {
        "classes": CLASSES[: model.num_outputs],
        "bands": bands,
        "normalization": normalization(scene, bands),
        "config": model.config.to_dict(),
        "tile_size": model.config.image_size,
    }
    return AdapterMetadata.from_document(document, scene.with_suffix(".adapter.json"))
