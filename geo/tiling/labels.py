"""Label sources per scene: vector polygons rasterised per window, or label rasters read per window.

Both return class ids (uint8) for a pixel window of the scene grid, with 255 (ignore) outside the
labelled area: the AOI when given, else the labels' extent (bounding box of the features in the
scene for vector labels, the label raster's coverage for label rasters). Label values no class lists
become the class map's `unmapped` id. A class map with a boundary class outlines each vector
polygon with it (`geo.tiling.boundaries`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from rasterio import features, windows
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geo.contracts.classes import IGNORE, ClassMap, some_values, value_key
from geo.errors import InputError
from geo.io.raster import (
    SceneInfo,
    area_mask,
    check_exists,
    is_virtual,
    open_raster,
    window_bounds,
)
from geo.io.units import pixel_metres
from geo.io.vector import (
    check_polygons,
    choose_layer,
    first_part,
    is_parquet,
    no_field,
    read_vectors,
    to_scene_crs,
)
from geo.tiling.boundaries import outline

log = logging.getLogger(__name__)
SLIVER = 0.01  # polygons overlapping by less than this share of the smaller one merely touch

WindowLabels = Callable[[Window], tuple[np.ndarray, set[str]]]


@dataclass(frozen=True)
class Outlines:
    """How polygons are outlined: the boundary class id and the outline width in pixels."""

    class_id: int
    width_px: float


@dataclass
class VectorLabels:
    """Class-tagged polygons of one scene in its CRS, rasterised on demand per window."""

    scene: SceneInfo
    geoms: np.ndarray  # shapely geometries in burn order: classes ascending, ignore last
    ids: np.ndarray  # uint8 class id per geometry
    extent: shapely.Geometry | None  # labelled area in the scene CRS; None: everywhere
    all_touched: bool = False
    outlines: Outlines | None = None
    _tree: shapely.STRtree | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tree": None}

    @property
    def tree(self) -> shapely.STRtree:
        if self._tree is None:
            self._tree = shapely.STRtree(self.geoms)
        return self._tree

    def rasterize(self, window: Window) -> np.ndarray:
        """Class ids over a window of the scene grid (255 outside the labelled area)."""
        labelled = (
            None if self.extent is None else area_mask(self.extent, window, self.scene.affine)
        )
        if labelled is not None and not labelled.any():
            return np.full(labelled.shape, IGNORE, dtype=np.uint8)
        if self.outlines is None:
            out = self._burn(window, self.ids, "uint8")
        else:
            out = self._outlined(window, self.outlines)
        if labelled is not None:
            out[~labelled] = IGNORE
        return out

    def _outlined(self, window: Window, outlines: Outlines) -> np.ndarray:
        """Class ids with each polygon's outline as the boundary class: polygon ids are burnt
        over the window plus a margin of the outline width, so that the outline is exact."""
        m = int(math.floor(outlines.width_px))
        wide = Window(window.col_off - m, window.row_off - m, window.width + 2 * m,
                      window.height + 2 * m)  # fmt: skip
        instances = self._burn(wide, np.arange(1, len(self.geoms) + 1), "int32")
        classes = np.concatenate([[0], self.ids]).astype(np.uint8)[instances]
        classes[outline(instances, outlines.width_px)] = outlines.class_id
        return classes[m : m + int(window.height), m : m + int(window.width)]

    def _burn(self, window: Window, values: np.ndarray, dtype: str) -> np.ndarray:
        """`values` (one per geometry, later geometries on top) over a window, 0 elsewhere."""
        transform = self.scene.affine
        shape = (int(window.height), int(window.width))
        left, bottom, right, top = window_bounds(transform, window)
        pad = 2 * self.scene.pixel_size
        hits = np.sort(self.tree.query(shapely.box(left, bottom, right, top)))
        if not hits.size:
            return np.zeros(shape, dtype=dtype)
        clipped = shapely.clip_by_rect(
            self.geoms[hits], left - pad, bottom - pad, right + pad, top + pad
        )
        shapes = [(g, int(v)) for g, v in zip(clipped, values[hits], strict=True) if not g.is_empty]
        if not shapes:
            return np.zeros(shape, dtype=dtype)
        return np.asarray(features.rasterize(
            shapes, out_shape=shape, transform=windows.transform(window, transform), fill=0,
            all_touched=self.all_touched, dtype=dtype,
        ))  # fmt: skip

    @contextmanager
    def reader(self) -> Iterator[WindowLabels]:
        yield lambda window: (self.rasterize(window), set())


def prepare_vector_labels(
    paths: str | list[str],
    scenes: list[SceneInfo],
    class_map: ClassMap,
    label_field: str | None,
    aois: list[shapely.Geometry | None],
    all_touched: bool = False,
    layer: str | None = None,
) -> list[VectorLabels]:
    """Read vector label files (one, or several such as one per scene: their polygons together,
    each file in its own CRS) and split them into per-scene label sources (validated)."""
    paths = [paths] if isinstance(paths, str) else paths
    objects = class_map.num_classes - (class_map.boundary is not None)
    if label_field is None and objects != 2:
        raise InputError(
            f"{paths[0]}: the class map has {objects} classes besides boundaries; pass a label "
            "field naming the attribute that holds the class values"
        )
    read = [(path, _read_labels(path, class_map, label_field, layer)) for path in paths]
    if label_field is not None:
        _warn_drawn_background(paths, class_map, [frame[label_field] for _, frame in read])
        for path, frame in read:
            _warn_overlapping_classes(path, frame, class_map)
    frames = _by_crs(read)
    sources = []
    for scene, aoi in zip(scenes, aois, strict=True):
        if scene.crs is None:
            raise InputError(
                f"{scene.path}: the scene has no CRS, so vector labels cannot be placed on it "
                "(give one label raster per image instead)"
            )
        near = [to_scene_crs(frame, scene, path) for path, frame in frames]
        geoms = np.concatenate([np.asarray(n.geometry.values, dtype=object) for n in near])
        ids = np.concatenate([n["_class"].to_numpy(dtype=np.uint8) for n in near])
        if not len(geoms) and aoi is None:
            missed = (
                f"{paths[0]}: no features overlap scene {scene.path}"
                if len(paths) == 1
                else f"{scene.path}: no features of the {len(paths)} label files overlap the scene"
            )
            raise InputError(f"{missed} (check the CRS)")
        order = np.argsort(ids, kind="stable")  # burn order: classes ascending, ignore last
        geoms, ids = geoms[order], ids[order]
        extent = aoi if aoi is not None else shapely.box(*shapely.total_bounds(geoms))
        outlines = scene_outlines(class_map, scene)
        sources.append(VectorLabels(scene, geoms, ids, extent, all_touched, outlines))
    return sources


def _by_crs(frames: list[tuple[str, gpd.GeoDataFrame]]) -> list[tuple[str, gpd.GeoDataFrame]]:
    """The files' polygons joined per CRS (one spatial index for thousands of per-scene files),
    each named by its first file."""
    groups: dict[str, list[tuple[str, gpd.GeoDataFrame]]] = {}
    for path, frame in frames:
        groups.setdefault(frame.crs.to_wkt() if frame.crs else "", []).append((path, frame))
    return [
        (group[0][0], pd.concat([f for _, f in group], ignore_index=True))
        for group in groups.values()
    ]


def _read_labels(
    path: str, class_map: ClassMap, label_field: str | None, layer: str | None
) -> gpd.GeoDataFrame:
    """One vector label file's polygons with their class id (`_class`), validated."""
    if not is_virtual(path) and not is_parquet(path):
        check_exists(path, "labels file")
        layer = choose_layer(path, layer, "labels")
        try:
            info = pyogrio.read_info(path, layer=layer)
        except Exception as err:  # pyogrio raises several error types
            raise InputError(
                f"{path}: not a vector file OGR can read ({first_part(err)})"
            ) from None
        if info["features"] == 0:
            raise InputError(f"{path}: the labels file has no features")
        if label_field is not None and label_field not in list(info["fields"]):
            raise no_field(path, label_field, info["fields"])
    frame = read_vectors(path, [label_field] if label_field else [], layer=layer)
    check_polygons(frame, path)
    if label_field is not None and label_field not in frame.columns:
        raise no_field(path, label_field, frame.columns)
    if label_field is None:
        frame["_class"] = np.uint8(next(c.id for c in class_map.classes[1:] if c.boundary is None))
    else:
        values = frame[label_field].tolist()
        ids, missing = class_map.map_values(values)
        frame["_class"] = ids
        cases = class_map.case_misses(missing)
        case_note = f" (values match exactly, case too: {', '.join(cases[:5])})" if cases else ""
        if missing and all(class_map.class_id(v) is None for v in values):
            listed = some_values(class_map.listed_values(), 10)
            raise InputError(
                f"{path}: no {label_field} value is in a class of the class map (values "
                f"{some_values(missing, 10)}; the class map lists {listed}){case_note}: list "
                "these values in its classes' `values`, or choose another label field"
            )
        if missing:
            log.warning(
                "%s: %s value(s) %s are in no class: they become %s%s",
                path, label_field, some_values(missing), class_map.unmapped, case_note,
            )  # fmt: skip
    return frame


def _warn_overlapping_classes(path: str, frame: gpd.GeoDataFrame, class_map: ClassMap) -> None:
    """Warn when polygons of different classes overlap by more than SLIVER of the smaller one,
    a digitising slip the labels would otherwise settle without a word: there the class later
    in the map wins. Slivers along shared edges, as reprojecting or snapping leaves them, are no
    slip."""
    geoms, ids = frame.geometry.values, frame["_class"].to_numpy()
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = (left < right) & (ids[left] != ids[right])
    left, right = left[pairs], right[pairs]
    inside = shapely.relate_pattern(geoms[left], geoms[right], "T********")
    left, right = left[inside], right[inside]
    shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    smaller = np.minimum(shapely.area(geoms[left]), shapely.area(geoms[right]))
    inside = shared > SLIVER * smaller
    if not inside.any():
        return
    a, b = int(left[inside][0]), int(right[inside][0])
    where = shapely.intersection(geoms[a], geoms[b]).representative_point()
    names = [
        class_map.classes[i].name if i < class_map.num_classes else "ignore"
        for i in sorted((int(ids[a]), int(ids[b])))
    ]
    log.warning(
        "%s: %d pair(s) of polygons of different classes overlap (the first at %.6g, %.6g: %s "
        "and %s): where they do, the class later in the class map wins",
        path, int(inside.sum()), where.x, where.y,
        names[0], names[1],
    )  # fmt: skip


def _warn_drawn_background(paths: list[str], class_map: ClassMap, values: list[pd.Series]) -> None:
    """Warn once when features are of class 0 by its `values` under another name than
    background: the first class of a map is the background, which every pixel no polygon
    covers takes too (a map listing only crop and pivot teaches the land between them as
    crop)."""
    first = class_map.classes[0]
    drawn = sum(int(v.map(value_key).isin(first.values).sum()) for v in values)
    if drawn and first.name.strip().lower() != "background":
        files = paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"
        log.warning(
            "%s: %d feature(s) are class 0, %r, which is also the background: every pixel no "
            "polygon covers becomes %r; if that is not what lies between your polygons, list "
            "`- name: background` first in the class map",
            files, drawn, first.name, first.name,
        )  # fmt: skip


def scene_outlines(class_map: ClassMap, scene: SceneInfo) -> Outlines | None:
    """The boundary class and its width in this scene's pixels (None without a boundary
    class); InputError when the width is under one pixel."""
    boundary = class_map.boundary
    if boundary is None or boundary.boundary is None:
        return None
    pixel_m = pixel_metres(scene.crs, scene.affine, scene.height)
    width_px = boundary.boundary.pixels(pixel_m)
    if width_px < 1:
        raise InputError(
            f"class {boundary.name!r}: boundary width {boundary.boundary} is under one pixel "
            f"({pixel_m:.3g} m) of {scene.path}; give at least 1 px"
        )
    return Outlines(boundary.id, width_px)


@dataclass(frozen=True)
class RasterLabels:
    """A label raster of one scene, read per window and resampled (nearest) to the scene grid."""

    path: str
    scene: SceneInfo
    class_map: ClassMap
    warp: bool
    aoi: shapely.Geometry | None = None

    def _read(self, src, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Codes and coverage (inside the label raster and not nodata) over a window."""
        shape = (int(window.height), int(window.width))
        codes = np.zeros(shape, dtype=src.dtypes[0])
        covered = np.zeros(shape, dtype=bool)
        inner = window.intersection(Window(0, 0, src.width, src.height))
        r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
        at = (slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width)))
        codes[at] = src.read(1, window=inner)
        covered[at] = src.read_masks(1, window=inner) > 0
        return codes, covered

    @contextmanager
    def reader(self) -> Iterator[WindowLabels]:
        scene = self.scene
        with open_raster(self.path) as src:
            if self.warp:
                vrt = WarpedVRT(
                    src,
                    crs=scene.crs,
                    transform=scene.affine,
                    width=scene.width,
                    height=scene.height,
                    resampling=Resampling.nearest,
                    add_alpha=True,
                )
            else:
                vrt = None

            def read(window: Window) -> tuple[np.ndarray, set[str]]:
                codes, covered = self._read(vrt or src, window)
                ids, missing = self.class_map.map_array(codes[covered])
                out = np.full(codes.shape, IGNORE, dtype=np.uint8)
                out[covered] = ids
                if self.aoi is not None:
                    out[~area_mask(self.aoi, window, scene.affine)] = IGNORE
                return out, missing

            try:
                yield read
            finally:
                if vrt is not None:
                    vrt.close()


def _warn_nodata_in_a_class(path: str, nodata: float | None, class_map: ClassMap) -> None:
    """Warn when a label raster's no-data value is a value the class map takes for a class (0
    for background, say): those pixels stay unlabelled, as no data always is."""
    cid = None if nodata is None else class_map.class_id(nodata)
    if cid is None:
        return
    name, value = class_map.classes[cid].name, value_key(nodata)
    log.warning(
        "%s: its no-data value %s is a label value of class %r, but no data stays unlabelled "
        "(ignored in training); to learn those pixels as %r, unset it (`gdal_edit.py "
        "-unsetnodata %s`)",
        path, value, name, name, path,
    )  # fmt: skip


def prepare_raster_labels(
    path: str, scene: SceneInfo, class_map: ClassMap, aoi: shapely.Geometry | None
) -> RasterLabels:
    """Check a label raster against its scene and decide whether it must be warped."""
    check_exists(path, "label raster")
    try:
        with open_raster(path) as src:
            crs, transform, shape = src.crs, src.transform, (src.height, src.width)
            bounds, nodata = src.bounds, src.nodata
    except Exception:  # rasterio raises several error types
        raise InputError(f"{path}: not a raster GDAL can read") from None
    _warn_nodata_in_a_class(path, nodata, class_map)
    same_shape = shape == (scene.height, scene.width)
    if scene.crs is None or crs is None:
        if not same_shape:
            raise InputError(
                f"{path}: label raster is {shape[1]}x{shape[0]} but scene {scene.path} is "
                f"{scene.width}x{scene.height}; without a CRS on both they must match pixel "
                "for pixel"
            )
        if scene.crs is not None:  # scenes without a CRS are reported once by the caller
            log.warning("%s has no CRS: pairing it with %s pixel for pixel", path, scene.path)
        return RasterLabels(path, scene, class_map, warp=False, aoi=aoi)
    aligned = same_shape and crs == scene.crs and transform.almost_equals(scene.affine)
    if not aligned:
        left, bottom, right, top = transform_bounds(crs, scene.crs, *bounds, densify_pts=21)
        s_left, s_bottom, s_right, s_top = scene.bounds
        if left >= s_right or right <= s_left or bottom >= s_top or top <= s_bottom:
            raise InputError(
                f"{path}: label raster does not overlap scene {scene.path} (check the CRS)"
            )
        log.info(
            "%s is on another grid than %s (%s): its labels are warped onto the scene's pixels, "
            "nearest value", path, scene.path,
            "another CRS" if crs != scene.crs else "other pixels",
        )  # fmt: skip
    return RasterLabels(path, scene, class_map, warp=not aligned, aoi=aoi)
