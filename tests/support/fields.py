"""Field-boundary fixtures from the bundled real polygons: parcels that share edges (centre
pivots cut into quarters, buildings cut into row houses), boundary-aware class maps, and class
rasters burnt from polygon labels."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from geo.contracts.classes import ClassMap
from geo.io.grid import GridSpec
from geo.io.raster import scene_info
from geo.tiling.labels import prepare_vector_labels


def boundary_map(name: str, width: str) -> ClassMap:
    """background, `name` and a `name` boundary class of `width` ("1 px", "1 m")."""
    return ClassMap.from_dict(
        [
            {"name": "background", "color": "#000000"},
            {"name": name, "color": "#33a02c"},
            {"name": f"{name} boundary", "boundary": width, "color": "#e31a1c"},
        ]
    )


def cut(frame: gpd.GeoDataFrame, pieces: int) -> gpd.GeoDataFrame:
    """Each polygon cut through its centroid into 2 (a vertical cut) or 4 (and a horizontal
    one) parts that share edges, as neighbouring parcels or row houses do."""
    parts = []
    for geom in frame.geometry:
        x, y = geom.centroid.x, geom.centroid.y
        left, bottom, right, top = geom.bounds
        boxes = [
            shapely.box(left - 1, bottom - 1, x, top + 1),
            shapely.box(x, bottom - 1, right + 1, top + 1),
        ]
        if pieces == 4:
            boxes = [b.intersection(h) for b in boxes for h in (
                shapely.box(left - 1, bottom - 1, right + 1, y),
                shapely.box(left - 1, y, right + 1, top + 1))]  # fmt: skip
        parts += [geom.intersection(b) for b in boxes]
    return gpd.GeoDataFrame(geometry=parts, crs=frame.crs)


def class_raster(
    image: Path, labels: Path, class_map: ClassMap, out: Path, label_field: str | None = None
) -> Path:
    """The polygon labels burnt on the image's grid through tiling's label source (with their
    outlines for a boundary class map), written as a one-band class raster (255 = nodata)."""
    scene = scene_info(str(image))
    (source,) = prepare_vector_labels(str(labels), [scene], class_map, label_field, [None])
    classes = source.rasterize(Window(0, 0, scene.width, scene.height))
    profile = {
        "driver": "GTiff", "width": scene.width, "height": scene.height, "count": 1,
        "dtype": "uint8", "crs": scene.crs, "transform": scene.affine, "nodata": 255,
    }  # fmt: skip
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(classes[None])
    return out


def best_iou(truth: gpd.GeoSeries, found: gpd.GeoSeries) -> np.ndarray:
    """For each true polygon, its highest IoU with any polygon found."""
    tree = shapely.STRtree(found.values)
    best = np.zeros(len(truth))
    for i, geom in enumerate(truth.values):
        for j in tree.query(geom, predicate="intersects"):
            other = found.values[j]
            inter = shapely.intersection(geom, other).area
            best[i] = max(best[i], inter / shapely.union(geom, other).area)
    return best


def mosaic(source, width: int, height: int, size: int = 256, overlap: int = 32) -> np.ndarray:
    """The scene's labels put together from overlapping windows (which must agree)."""
    out = np.full((height, width), 254, dtype=np.uint8)
    with source.reader() as read:
        for _, _, window in GridSpec(width, height, size, overlap).windows():
            labels, _ = read(window)
            r, c = int(window.row_off), int(window.col_off)
            h, w = min(size, height - r), min(size, width - c)
            seen = out[r : r + h, c : c + w]
            assert np.all((seen == 254) | (seen == labels[:h, :w])), "overlapping windows disagree"
            out[r : r + h, c : c + w] = labels[:h, :w]
    return out
