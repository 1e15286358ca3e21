"""Object-level metrics, as Fields of The World reports them: a predicted object counts when it
matches a reference object at IoU > 0.5 (a match at that IoU is necessarily one to one).

Objects are found per tile, as FTW does per chip, on the tile's core (the cores of a store's
tiles cover each scene once, as FTW's chips do, so where tiles overlap no object counts twice):
the predicted classes become objects as prediction vectorises them (`geo.vectorize.objects`:
with a boundary class, boundary pixels are given back and touching objects stay apart);
reference objects are the store's labels found the same way, or the polygons of a vector file,
each its own object (each part of a multi-part feature too). Pixels the reference leaves
unlabelled (255) count for neither. Objects of any class are matched regardless of class.
Objects of fewer than 4 pixels (`MIN_AREA_PIXELS`, the smallest polygon `predict` writes by
default) count on neither side: specks are not fields (on AgNet's crop-type labels 4,159 of
5,345 reference objects were specks, and recall read 0.004), and a field cut to a sliver by a
tile core's edge is not one either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
import zarr
from affine import Affine
from rasterio import features, windows
from rasterio.crs import CRS
from rasterio.windows import Window

from geo.contracts.tile_store import SceneRecord, StoreInfo
from geo.errors import InputError
from geo.io.raster import window_bounds
from geo.io.vector import check_polygons, read_vectors
from geo.vectorize.polygons import MIN_AREA_PIXELS

MATCH_IOU = 0.5
log = logging.getLogger(__name__)


def match(reference: np.ndarray, predicted: np.ndarray) -> tuple[int, int, list[float]]:
    """Reference and predicted object counts, and the IoU of each matched pair (IoU > 0.5),
    for two object id arrays (0: no object) over the same pixels; objects of fewer than
    MIN_AREA_PIXELS pixels count on neither side."""
    ref_ids, ref_at = np.unique(reference, return_inverse=True)
    pred_ids, pred_at = np.unique(predicted, return_inverse=True)
    ref_area = np.bincount(ref_at.ravel())
    pred_area = np.bincount(pred_at.ravel())
    ref_counted = (ref_ids > 0) & (ref_area >= MIN_AREA_PIXELS)
    pred_counted = (pred_ids > 0) & (pred_area >= MIN_AREA_PIXELS)
    both = ref_counted[ref_at.ravel()] & pred_counted[pred_at.ravel()]
    pairs, overlap = np.unique(
        np.stack([ref_at.ravel()[both], pred_at.ravel()[both]]), axis=1, return_counts=True
    )
    union = ref_area[pairs[0]] + pred_area[pairs[1]] - overlap
    iou = overlap / union
    return int(ref_counted.sum()), int(pred_counted.sum()), [float(v) for v in iou[iou > MATCH_IOU]]


@dataclass
class ObjectScore:
    """Matches accumulated over tiles."""

    reference: int = 0
    predicted: int = 0
    ious: list[float] = field(default_factory=list)

    def add(self, reference: np.ndarray, predicted: np.ndarray, labelled: np.ndarray) -> None:
        """One tile's object ids; objects are counted on the labelled pixels only."""
        n_ref, n_pred, ious = match(
            np.where(labelled, reference, 0), np.where(labelled, predicted, 0)
        )
        self.reference += n_ref
        self.predicted += n_pred
        self.ious += ious

    def summary(self) -> dict[str, Any]:
        """Precision, recall, F1 (None when undefined), median IoU of the matches, counts. F1
        is 2 TP / (2 TP + FP + FN): 0 when nothing matched (none found right, or nothing found
        where there are objects), undefined only without objects on either side."""
        matched = len(self.ious)
        precision = matched / self.predicted if self.predicted else None
        recall = matched / self.reference if self.reference else None
        found = self.predicted + self.reference
        f1 = 2 * matched / found if found else None
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "median_iou": float(np.median(self.ious)) if self.ious else None,
            "matched": matched,
            "predicted": self.predicted,
            "reference": self.reference,
            "iou_threshold": MATCH_IOU,
            "min_pixels": MIN_AREA_PIXELS,
        }


def fields_of(frame: gpd.GeoDataFrame, path: str) -> gpd.GeoDataFrame:
    """Each polygon of the reference a field of its own: a multi-part feature (a layer
    dissolved by class in QGIS) gives one field per part; InputError for points or lines."""
    check_polygons(frame, path, "the reference")
    parts = frame
    while parts.geom_type.isin(["MultiPolygon", "GeometryCollection"]).any():
        parts = parts.explode(index_parts=False)  # collections nest: one level at a time
    parts = parts[parts.geom_type == "Polygon"].reset_index(drop=True)
    single = int((frame.geom_type == "Polygon").sum())
    if len(frame) > single:
        log.info(
            "%s: %d multi-part feature(s) taken as their %d polygons, each a field",
            path, len(frame) - single, len(parts) - single,
        )  # fmt: skip
    return parts


class ReferencePolygons:
    """Polygons of a vector file burnt per tile of a store, each polygon its own object id."""

    def __init__(self, path: str, store: StoreInfo) -> None:
        frame = fields_of(read_vectors(path, [], what="reference"), path)
        group = zarr.open_group(str(store.path), mode="r")
        scene_of, windows_ = group["scene"], group["window"]
        assert isinstance(scene_of, zarr.Array) and isinstance(windows_, zarr.Array)
        self.scene_of, self.windows = np.asarray(scene_of[:]), np.asarray(windows_[:])
        self.store = store
        self.per_scene: list[tuple[np.ndarray, shapely.STRtree]] = []
        for scene in store.scenes:
            if scene.crs is None or frame.crs is None:
                raise InputError(f"{path}: reference polygons and scenes need a CRS to meet")
            geoms = np.asarray(frame.to_crs(CRS.from_wkt(scene.crs)).geometry.values)
            self.per_scene.append((geoms, shapely.STRtree(geoms)))
        if not any(len(t.query(shapely.box(*_scene_bounds(s)))) for s, (_, t) in
                   zip(store.scenes, self.per_scene, strict=True)):  # fmt: skip
            raise InputError(f"{path}: no reference polygon overlaps the store's scenes")

    def objects(self, index: int) -> np.ndarray:
        """Object ids (int64) of tile `index`: 1 + the polygon's row, 0 outside every polygon."""
        scene = self.store.scenes[int(self.scene_of[index])]
        col, row, width, height = (int(v) for v in self.windows[index])
        tile = self.store.tile_size
        transform = windows.transform(Window(col, row, tile, tile), Affine(*scene.transform[:6]))
        geoms, tree = self.per_scene[int(self.scene_of[index])]
        hits = np.sort(tree.query(shapely.box(*window_bounds(transform, Window(0, 0, tile, tile)))))
        if not hits.size:
            return np.zeros((tile, tile), dtype=np.int64)
        burnt = features.rasterize(
            [(geoms[h], int(h) + 1) for h in hits], out_shape=(tile, tile), transform=transform,
            dtype="int32",
        )  # fmt: skip
        return np.asarray(burnt, dtype=np.int64)


def _scene_bounds(scene: SceneRecord) -> tuple[float, float, float, float]:
    return window_bounds(Affine(*scene.transform[:6]), Window(0, 0, scene.width, scene.height))
