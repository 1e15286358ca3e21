"""Vector files (GeoPackage, GeoJSON, Shapefile, FlatGeobuf, GeoParquet): checked reads."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from geo.errors import InputError, OutsideAreaError
from geo.io.raster import SceneInfo, check_exists

VECTOR_SUFFIXES = {".gpkg", ".geojson", ".json", ".shp", ".parquet", ".geoparquet", ".fgb", ".gdb"}
PARQUET_SUFFIXES = {".parquet", ".geoparquet"}
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".jp2"}
# GeoPackages written as version 1.2, which GDAL before 3.7 (QGIS on Debian 12 and Ubuntu 22.04)
# reads without a word: of GDAL's default 1.4 it warned "may only be partially supported" and,
# for dates written without milliseconds, "non-conformant content" on every open
GPKG_OPTIONS = {"driver": "GPKG", "VERSION": "1.2"}
EPOCH = "1970-01-01T00:00:00.000Z"  # the last change of GeoPackages of undated inputs: equal bytes

log = logging.getLogger(__name__)


def is_vector(path: str) -> bool:
    """Whether a path is a vector file (by suffix, else by what GDAL/OGR can open)."""
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        return True
    if suffix in RASTER_SUFFIXES:
        return False
    try:
        pyogrio.read_info(path)
        return True
    except Exception:  # not a vector source: treat it as a raster
        return False


def first_part(err: BaseException) -> str:
    """The first part of a GDAL/OGR message (they run on with hints)."""
    return str(err).split("; ")[0].strip()


def is_parquet(path: str) -> bool:
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def layer_names(path: str) -> list[str]:
    """The layers of an OGR vector source with geometries ([] for GeoParquet): tables without
    any, such as the `layer_styles` table QGIS and our predictions write into a GeoPackage, are
    left out, unless the source holds nothing else."""
    if is_parquet(path):
        return []
    try:
        layers = [(str(name), kind) for name, kind in pyogrio.list_layers(path)]
    except Exception as err:  # pyogrio raises several error types
        raise InputError(f"{path}: not a vector file OGR can read ({first_part(err)})") from None
    spatial = [name for name, kind in layers if kind is not None]
    return spatial or [name for name, _ in layers]


def choose_layer(path: str, layer: str | None, what: str) -> str | None:
    """The layer to read: `layer` (which must exist), or the only one with geometries;
    InputError listing the layers when a file holds several and none was named (only labels
    have an option to name one: `--label-layer`)."""
    names = layer_names(path)
    if layer is not None:
        if layer not in names:
            raise InputError(f"{path}: no layer {layer!r} (layers: {', '.join(names)})")
        return layer
    if len(names) > 1:
        how = "name the labels layer with --label-layer"
        if what != "labels":
            how = f"give the {what} as a file of one layer"
        raise InputError(f"{path}: holds {len(names)} layers ({', '.join(names)}); {how}")
    return names[0] if names else None


def parquet_columns(path: str) -> tuple[list[str], str]:
    """A GeoParquet file's columns and its primary geometry column, from its `geo` metadata
    ("geometry" when it has none: geopandas then says what is wrong)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    try:
        geometry = str(json.loads((schema.metadata or {})[b"geo"])["primary_column"])
    except (KeyError, ValueError, TypeError):
        geometry = "geometry"
    return schema.names, geometry


@contextmanager
def renumbered_ids_quiet() -> Iterator[None]:
    """Without OGR's warning that features share an `id` (QGIS's default field, copied with
    the features): it renumbers them, which changes nothing we read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Several features with id", RuntimeWarning)
        yield


def read_vectors(
    path: str, columns: list[str], what: str = "labels", layer: str | None = None
) -> gpd.GeoDataFrame:
    """Features with a geometry of a vector file's layer (see `choose_layer`)."""
    check_exists(path, f"{what} file")
    try:
        if is_parquet(path):
            frame = gpd.read_parquet(path, columns=[*columns, parquet_columns(path)[1]])
        else:
            chosen = choose_layer(path, layer, what)
            with renumbered_ids_quiet():
                frame = gpd.read_file(path, engine="pyogrio", columns=columns, layer=chosen)
    except InputError:
        raise
    except ImportError as err:
        raise InputError(f"{path}: reading GeoParquet needs pyarrow ({err})") from None
    except Exception as err:  # pyogrio and pyarrow raise many types
        raise InputError(f"{path}: not a vector file OGR can read ({first_part(err)})") from None
    if frame.empty:
        raise InputError(f"{path}: the {what} file has no features")
    return frame[~(frame.geometry.isna() | frame.geometry.is_empty)]


def field_values(path: str, field: str, layer: str | None = None) -> list[Any]:
    """The values of one attribute of a vector file's features, read without geometries;
    InputError naming the file when it has no such field."""
    check_exists(path, "labels file")
    try:
        if is_parquet(path):
            columns, geometry = parquet_columns(path)
            names = [n for n in columns if n != geometry]
            frame = pd.read_parquet(path, columns=[field]) if field in names else pd.DataFrame()
        else:
            chosen = choose_layer(path, layer, "labels")
            info = pyogrio.read_info(path, layer=chosen)
            if info["features"] == 0:
                raise InputError(f"{path}: the labels file has no features")
            names = list(info["fields"])
            with renumbered_ids_quiet():
                frame = pyogrio.read_dataframe(
                    path, layer=chosen, columns=[field], read_geometry=False
                )
    except InputError:
        raise
    except Exception as err:  # pyogrio and pyarrow raise many types
        raise InputError(f"{path}: not a vector file OGR can read ({first_part(err)})") from None
    if field not in frame.columns:
        raise no_field(path, field, names)
    return frame[field].tolist()


def no_field(path: str, field: str, names: Iterable[str]) -> InputError:
    """The error for a vector file without the attribute `field`, listing the ones it has."""
    return InputError(f"{path}: no field {field!r} (fields: {', '.join(names) or 'none'})")


def to_scene_crs(frame: gpd.GeoDataFrame, scene: SceneInfo, path: str) -> gpd.GeoDataFrame:
    """Features near the scene, reprojected to its CRS (a file without CRS is taken as is),
    invalid geometries repaired with a warning."""
    if frame.crs is None:
        log.warning("%s has no CRS: assuming the CRS of %s", path, scene.path)
        near = frame
    else:
        assert scene.crs is not None  # scenes without a CRS get no vector labels
        area = search_area(scene, frame.crs)
        near = frame.iloc[np.sort(frame.sindex.query(area, predicate="intersects"))]
        near = near.to_crs(scene.crs.to_wkt())
    near = near[near.intersects(scene.outline)]
    invalid = ~shapely.is_valid(near.geometry.values)
    if invalid.any():
        log.warning(
            "%s: %d polygon(s) over %s are invalid (the first: %s) and are repaired as QGIS's "
            "Fix geometries repairs them (a bow-tie's two loops both kept): check them if they "
            "meant something else", path, int(invalid.sum()), scene.path,
            shapely.is_valid_reason(near.geometry.values[invalid][0]),
        )  # fmt: skip
    return near.set_geometry(shapely.make_valid(near.geometry.values), crs=near.crs)


def search_area(scene: SceneInfo, crs: CRS) -> shapely.Geometry:
    """The scene's extent in another CRS, densified; split in two where it crosses the
    antimeridian of a geographic CRS (`transform_bounds` then returns left > right)."""
    left, bottom, right, top = transform_bounds(scene.crs, crs, *scene.bounds, densify_pts=21)
    if left <= right:
        return shapely.box(left, bottom, right, top)
    return shapely.MultiPolygon(
        [shapely.box(left, bottom, 180.0, top), shapely.box(-180.0, bottom, right, top)]
    )


def load_aoi(path: str) -> gpd.GeoDataFrame:
    """The area of interest polygons (any vector format); InputError for points or lines."""
    frame = read_vectors(path, [], what="aoi")
    check_polygons(frame, path, "an area of interest")
    return frame


def check_polygons(frame: gpd.GeoDataFrame, path: str, what: str = "labels") -> None:
    """InputError unless every feature is a polygon: points and lines cover no area (labels
    of them would be taught as background, an area of them would hold nothing)."""
    kinds = frame.geometry.geom_type
    wrong = kinds[~kinds.isin(["Polygon", "MultiPolygon", "GeometryCollection"])]
    if len(wrong):
        counts = ", ".join(f"{n} {k}" for k, n in wrong.value_counts().sort_index().items())
        if frame.geometry[wrong.index].is_closed.all():  # outlines of fields, digitised as lines
            hint = (
                ", all closed: make polygons of them first (QGIS: Lines to Polygons; "
                "shapely.polygonize)"
            )
        else:
            hint = " (buffer points and lines into polygons first, e.g. with geopandas .buffer())"
        raise InputError(f"{path}: {what} must be polygons, found {counts}{hint}")


def aoi_in_scene(aoi: gpd.GeoDataFrame, aoi_path: str, scene: SceneInfo) -> shapely.Geometry:
    """The AOI's union in the scene CRS, clipped to the scene; InputError when they do not meet."""
    if scene.crs is None:
        raise InputError(f"{aoi_path}: an AOI needs georeferenced scenes; {scene.path} has no CRS")
    near = to_scene_crs(aoi, scene, aoi_path)
    area = shapely.intersection(shapely.union_all(near.geometry.values), scene.outline)
    if area.is_empty or area.area == 0:
        raise OutsideAreaError(
            f"{aoi_path}: the AOI does not overlap scene {scene.path} (check the CRS)"
        )
    return area
