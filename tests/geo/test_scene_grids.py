"""Scenes on awkward grids tile their labels exactly: the bundled Nebraska scene and its 19 pivot
polygons moved, with one affine map, onto a UTM 60N grid that straddles the antimeridian (labels
in EPSG:4326, where they cross 180°) and onto grids rotated by 10° and 30°. The tile store must
hold what rasterising the polygons in the scene's own grid gives: all 7299 pivot pixels."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from affine import Affine
from pyproj import Transformer
from rasterio import features
from rasterio.warp import transform as transform_points

from tests.support.paths import NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS, PIVOT_MASK
from tests.support.stores import tile

PIVOT_PIXELS = 7299  # pivots_mask.tif
TILE, OVERLAP = 128, 32
UTM_60N = "EPSG:32660"
LATITUDE = 52.0  # the antimeridian at 52°N in UTM 60N runs through the pivots


def moved_scene(folder: Path, crs: str, transform: Affine) -> tuple[Path, gpd.GeoDataFrame]:
    """The Nebraska scene's pixels on a new grid, and its pivots moved with the same map."""
    with rasterio.open(NEBRASKA) as src:
        profile, pixels, old = src.profile, src.read(), src.transform
    profile.update(crs=crs, transform=transform)
    scene = folder / "scene.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(pixels)
    move = transform @ ~old  # old map coordinates -> pixel -> new map coordinates
    pivots = gpd.read_file(PIVOT_LABELS)
    geoms = [
        shapely.affinity.affine_transform(g, [move.a, move.b, move.d, move.e, move.c, move.f])
        for g in pivots.geometry
    ]
    return scene, gpd.GeoDataFrame(geometry=geoms, crs=crs)


def own_grid_labels(polygons: gpd.GeoDataFrame, transform: Affine) -> np.ndarray:
    """The polygons rasterised in the scene's own grid (pixel centres): 1 inside, 0 elsewhere in
    their extent (their bounding box in the scene's CRS), 255 outside it."""

    def burn(geoms: list, fill: int) -> np.ndarray:
        return features.rasterize(
            geoms, out_shape=(512, 512), transform=transform, fill=fill, default_value=1,
            dtype="uint8",
        )  # fmt: skip

    labels = burn(list(polygons.geometry), 0)
    labels[burn([shapely.box(*polygons.total_bounds)], 255) == 255] = 255
    return labels


def store_labels(store: Path) -> np.ndarray:
    """The scene's labels put together from its tiles; overlapping tiles must agree."""
    group = zarr.open_group(str(store), mode="r")
    labels, windows = group["labels"][:], group["window"][:]
    out = np.full((512, 512), 254, dtype=np.uint8)
    for tile_labels, (col, row, _, _) in zip(labels, windows, strict=True):
        h, w = min(TILE, 512 - row), min(TILE, 512 - col)
        seen, new = out[row : row + h, col : col + w], tile_labels[:h, :w]
        disagree = int(((seen != 254) & (seen != new)).sum())
        assert disagree == 0, (
            f"the tile at {col}, {row} disagrees with its neighbours on {disagree} px"
        )
        out[row : row + h, col : col + w] = new
    assert not (out == 254).any()
    return out


def assert_exact(store: Path, expected: np.ndarray) -> None:
    """Every pivot pixel is labelled pivot, the rest of the labels' extent background."""
    got = store_labels(store)
    assert int((got == 1).sum()) == PIVOT_PIXELS
    assert np.array_equal(got, expected)


def test_the_moved_polygons_are_the_bundled_mask() -> None:
    """The affine map keeps pixels and polygons together (the fixture of the tests below)."""
    with rasterio.open(NEBRASKA) as src, rasterio.open(PIVOT_MASK) as mask:
        transform, reference = src.transform, mask.read(1)
    polygons = gpd.read_file(PIVOT_LABELS)
    assert np.array_equal(own_grid_labels(polygons, transform) == 1, reference == 1)


def test_a_scene_across_the_antimeridian_with_labels_in_degrees(tmp_path: Path) -> None:
    """UTM 60N, 180° through the pivots; the labels in EPSG:4326 cross the antimeridian."""
    with rasterio.open(NEBRASKA) as src:
        old = src.transform
    pivots = gpd.read_file(PIVOT_LABELS)
    centre = pivots.union_all().centroid
    east, north = Transformer.from_crs("EPSG:4326", UTM_60N, always_xy=True).transform(
        180.0, LATITUDE
    )
    shift = Affine.translation(round(east - centre.x), round(north - centre.y))
    scene, polygons = moved_scene(tmp_path, UTM_60N, shift @ old)
    with rasterio.open(scene) as src:
        lons, _ = transform_points(src.crs, "EPSG:4326", [src.bounds.left, src.bounds.right],
                                   [src.bounds.top] * 2)  # fmt: skip
    assert lons[0] > 179 and lons[1] < -179  # the scene straddles 180°
    degrees = polygons.to_crs("EPSG:4326")
    lon_min, _, lon_max, _ = degrees.total_bounds
    assert lon_min < -179.9 and lon_max > 179.9  # some pivots lie on both sides
    labels = tmp_path / "pivots_4326.gpkg"
    degrees.to_file(labels, layer="pivots")
    store = tile([scene], [labels], PIVOT_CLASSES, tmp_path / "s.zarr", tile_size=TILE,
                 overlap=OVERLAP, dask_address="sync")  # fmt: skip
    assert_exact(store, own_grid_labels(polygons, shift @ old))


@pytest.mark.parametrize("degrees", [10, 30])
def test_a_rotated_scene(degrees: int, tmp_path: Path) -> None:
    """The grid turned about its top-left corner; overlapping tiles agree pixel for pixel."""
    with rasterio.open(NEBRASKA) as src:
        old, crs = src.transform, src.crs.to_wkt()
    rotated = Affine.translation(old.c, old.f) @ Affine.rotation(degrees) @ Affine.scale(30, -30)
    scene, polygons = moved_scene(tmp_path, crs, rotated)
    labels = tmp_path / "pivots.gpkg"
    polygons.to_file(labels, layer="pivots")
    store = tile([scene], [labels], PIVOT_CLASSES, tmp_path / "s.zarr", tile_size=TILE,
                 overlap=OVERLAP, dask_address="sync")  # fmt: skip
    assert_exact(store, own_grid_labels(polygons, rotated))
