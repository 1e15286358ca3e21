"""Fields as fields: boundary-aware labels from polygons, and polygons back, one per object,
on the bundled real data (FTW field-boundary prediction, SpaceNet and Alexandria buildings,
Nebraska centre pivots cut into parcels that share edges)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio import features
from scipy import ndimage

from geo.contracts.classes import ClassMap, load_class_map
from geo.io.raster import scene_info
from geo.tiling.labels import prepare_vector_labels
from geo.vectorize.polygons import polygon_batches, polygonize, write_polygons
from tests.support.fields import best_iou, boundary_map, class_raster, cut, mosaic
from tests.support.paths import (
    ALEXANDRIA,
    EXAMPLES,
    FTW_PREDICTION,
    NEBRASKA,
    PIVOT_LABELS,
    SPACENET,
    SPACENET_LABELS,
)

FTW = load_class_map(EXAMPLES / "ftw_classes.yaml")


def inside_scene(frame: gpd.GeoDataFrame, image: Path) -> gpd.GeoDataFrame:
    """The polygons wholly inside the scene (those cut by its edge are partly unlabelled)."""
    with rasterio.open(image) as src:
        outline = shapely.box(*src.bounds)
    frame = frame.to_crs(src.crs)
    return frame[frame.within(outline)]


@pytest.fixture(scope="module")
def quarters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real pivots, each cut into four quarter fields that share edges."""
    path = tmp_path_factory.mktemp("quarters") / "quarters.gpkg"
    cut(gpd.read_file(PIVOT_LABELS), 4).to_file(path)
    return path


def test_boundary_labels_agree_across_overlapping_windows_and_keep_touching_parcels_apart(
    quarters: Path,
) -> None:
    scene = scene_info(str(NEBRASKA))
    cmap = boundary_map("pivot", "30 m")  # one 30 m Landsat pixel
    (source,) = prepare_vector_labels(str(quarters), [scene], cmap, None, [None])
    labels = mosaic(source, scene.width, scene.height, size=64, overlap=16)  # windows agree
    parcels = gpd.read_file(quarters)
    ids = features.rasterize(
        [(g, i + 1) for i, g in enumerate(parcels.geometry)], out_shape=labels.shape,
        transform=scene.affine, dtype="int32",
    )  # fmt: skip
    assert np.array_equal(labels[ids > 0] > 0, np.ones((ids > 0).sum(), dtype=bool))
    assert np.all(labels[(ids == 0) & (labels != 255)] == 0)  # outlines lie inside parcels
    interior = labels == 1
    for a, b in ((np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1], np.s_[1:])):
        both = interior[a] & interior[b]
        assert np.all(ids[a][both] == ids[b][both])  # no two parcels' interiors touch
    assert (labels == 2).sum() > 0.3 * (ids > 0).sum()  # small parcels: much outline


def test_boundary_width_in_metres_is_converted_and_must_cover_a_pixel(quarters: Path) -> None:
    from geo.errors import InputError

    scene = scene_info(str(NEBRASKA))
    (wide,) = prepare_vector_labels(str(quarters), [scene], boundary_map("p", "60 m"), None, [None])
    assert wide.outlines is not None and wide.outlines.width_px == 2.0
    with pytest.raises(InputError, match=r"boundary width 10 m is under one pixel \(30 m\)"):
        prepare_vector_labels(str(quarters), [scene], boundary_map("p", "10 m"), None, [None])


def test_ftw_prediction_vectorises_into_separate_fields() -> None:
    """Every field interior of the FTW 3-class prediction becomes its own polygon, with the
    boundary pixels around it given back; no polygon holds two interiors."""
    with rasterio.open(FTW_PREDICTION) as src:
        mask, transform = src.read(1), src.transform
    interiors, count = ndimage.label(mask == 1)
    fields = polygonize(FTW_PREDICTION, None, FTW.classes, min_area=0, simplify=0)
    assert len(fields) == count == 272
    assert set(fields.class_name) == {"field"} and fields.score.isna().all()
    ids = features.rasterize(
        [(g, i + 1) for i, g in enumerate(fields.geometry)], out_shape=mask.shape,
        transform=transform, dtype="int32",
    )  # fmt: skip
    pairs = np.unique(np.stack([interiors[mask == 1], ids[mask == 1]]), axis=1)
    assert pairs.shape[1] == count  # one polygon per interior, one interior per polygon
    given_back = (ids > 0) & (mask == 2)
    assert given_back.sum() > 0.95 * (mask == 2).sum()  # fields keep their boundary pixels
    assert not np.any((ids > 0) & (mask == 0))
    plain = polygonize(FTW_PREDICTION, None, FTW.classes[:2], min_area=0, simplify=0)
    assert (plain.class_id == 1).sum() == count  # without boundary: interiors only, shrunk
    assert fields.area_m2.sum() > 1.3 * plain[plain.class_id == 1].area_m2.sum()


@pytest.mark.parametrize("band_rows", [5, 16, 1000])
def test_objects_do_not_depend_on_the_band_rows(band_rows: int) -> None:
    whole = polygonize(FTW_PREDICTION, None, FTW.classes, min_area=0, simplify=0)
    banded = polygonize(
        FTW_PREDICTION, None, FTW.classes, min_area=0, simplify=0, band_rows=band_rows
    )
    assert list(banded.id) == list(whole.id)  # ids: first pixel in scan order
    assert all(shapely.equals(a, b) for a, b in zip(banded.geometry, whole.geometry, strict=True))


def test_batches_simplified_apart_still_share_their_edges() -> None:
    """Batches of 10 fields, each simplified alone at 15 m (1.5 px), meet edge for edge."""
    batches = list(
        polygon_batches(FTW_PREDICTION, FTW_PREDICTION, FTW.classes, min_area=0, simplify=15.0,
                        band_rows=16, batch_objects=10)
    )  # fmt: skip
    assert len(batches) > 5
    geoms = np.concatenate([b.geometry.values for b in batches])
    assert shapely.coverage_is_valid(geoms)
    touching = sum(len(shapely.STRtree(geoms).query(g, predicate="touches")) for g in geoms)
    assert touching > 500  # fields do touch each other
    raw = polygonize(FTW_PREDICTION, None, FTW.classes, min_area=0, simplify=0).geometry.values
    whole = polygonize(FTW_PREDICTION, None, FTW.classes, min_area=0, simplify=15.0)
    vertices = [shapely.get_num_coordinates(g).sum() for g in (raw, geoms, whole.geometry.values)]
    assert vertices[0] > vertices[1] > vertices[2]  # edges between batches are kept as they are
    assert vertices[2] < 0.8 * vertices[0]  # one batch (the default up to 20000 objects)


CASES = [  # image, polygons, pieces per polygon, boundary width
    pytest.param(SPACENET, SPACENET_LABELS, 1, "1 m", id="atlanta-buildings"),
    pytest.param(
        ALEXANDRIA / "hag.tif",
        ALEXANDRIA / "buildings.geojson",
        1,
        "2 m",
        id="alexandria-buildings",
    ),  # fmt: skip
    pytest.param(SPACENET, SPACENET_LABELS, 2, "0.5 m", id="atlanta-row-houses"),
    pytest.param(NEBRASKA, PIVOT_LABELS, 4, "1 px", id="pivot-quarters"),
]


@pytest.mark.parametrize(("image", "labels", "pieces", "width"), CASES)
def test_polygons_rasterised_with_boundaries_come_back_one_by_one(
    tmp_path: Path, image: Path, labels: Path, pieces: int, width: str
) -> None:
    """Footprints burnt with their outlines and vectorised back: each its own polygon (IoU >
    0.5 for at least 95%); burnt without outlines, parcels that share edges merge."""
    truth = gpd.read_file(labels)[["geometry"]]
    if pieces > 1:
        truth = cut(truth, pieces)
    path = tmp_path / "truth.gpkg"
    truth.to_file(path)
    truth = inside_scene(truth, image)
    cmap = boundary_map("object", width)
    raster = class_raster(image, path, cmap, tmp_path / "classes.tif")
    found = polygonize(raster, None, cmap.classes, min_area=0, simplify=0)
    assert set(found.class_name) == {"object"}
    recovered = (best_iou(truth.geometry, found.geometry) > 0.5).mean()
    assert recovered >= 0.95
    if pieces > 1:
        plain_map = ClassMap(cmap.classes[:2])
        plain = class_raster(image, path, plain_map, tmp_path / "plain.tif")
        merged = polygonize(plain, None, plain_map.classes, min_area=0, simplify=0)
        assert (best_iou(truth.geometry, merged.geometry) > 0.5).mean() < recovered - 0.3


def test_fiboa_geoparquet_beside_the_geopackage(tmp_path: Path) -> None:
    frames = polygon_batches(
        FTW_PREDICTION, FTW_PREDICTION, FTW.classes, band_rows=16, batch_objects=50
    )
    totals = write_polygons(
        frames, tmp_path / "f.gpkg", FTW.classes, timestamp="2021-06-17T10:30:00.000Z",
        parquet=tmp_path / "f.parquet",
    )  # fmt: skip
    gpkg = gpd.read_file(tmp_path / "f.gpkg", layer="polygons")
    fields = gpd.read_parquet(tmp_path / "f.parquet")
    assert totals.count == {"field": len(gpkg)} and len(fields) == len(gpkg) > 200
    assert totals.unit == "ha" and totals.area["field"] == pytest.approx(
        gpkg.area_m2.sum() / 1e4, abs=0.01
    )
    assert list(fields.columns) == ["id", "geometry", "area", "perimeter", "determination_method",
                                    "determination_datetime", "class", "score"]  # fmt: skip
    assert fields.crs.to_epsg() == 32633 and list(fields.id) == list(gpkg.id)
    assert fields.id.is_unique
    np.testing.assert_allclose(fields["area"], gpkg.area_m2 / 1e4, rtol=1e-6)
    np.testing.assert_allclose(fields["area"], fields.geometry.area / 1e4, atol=0.005 / 1e4)
    np.testing.assert_allclose(fields.perimeter, fields.geometry.length, atol=0.005)  # to cm
    assert (fields.determination_method == "auto-imagery").all()
    assert str(fields.determination_datetime.iloc[0]) == "2021-06-17 10:30:00+00:00"
    assert fields.score.between(0, 1).all() and (fields["class"] == "field").all()
    metadata = pq.read_metadata(tmp_path / "f.parquet").metadata
    geo = json.loads(metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["bbox"] == list(fields.total_bounds)
    assert json.loads(metadata[b"fiboa"])["fiboa_version"] == "0.2.0"
    assert pq.ParquetFile(tmp_path / "f.parquet").num_row_groups > 1  # written batch by batch
    # readers that go by the Arrow schema find the geometry and its CRS too (they found none)
    schema = pyarrow.dataset.dataset(tmp_path / "f.parquet").schema.metadata
    column = json.loads(schema[b"geo"])["columns"]["geometry"]
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 32633} and b"fiboa" in schema
    assert column["geometry_types"] == [] and "bbox" not in column  # unknown until the end
