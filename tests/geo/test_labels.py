"""Label sources: vectors rasterised per window and label rasters resampled to the scene grid."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from geo.contracts.classes import IGNORE, ClassMap, load_class_map
from geo.errors import InputError
from geo.io.raster import SceneInfo, scene_info
from geo.io.vector import field_values, is_vector, read_vectors
from geo.tiling.labels import VectorLabels, prepare_raster_labels, prepare_vector_labels
from tests.support.fields import mosaic

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
ATLANTA = DATA / "spacenet_atlanta_buildings"
ALEXANDRIA = DATA / "alexandria_lidar_buildings"
PIVOTS = DATA / "nebraska_center_pivots_landsat"
BINARY = ClassMap.from_dict([{"name": "background"}, {"name": "object", "values": ["yes"]}])


def reference(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


CASES = [
    (ATLANTA, "atlanta_pan_0p5m.tif", "atlanta_buildings.geojson", "atlanta_buildings_mask.tif"),
    (ALEXANDRIA, "hag.tif", "buildings.geojson", "buildings_mask.tif"),
    (PIVOTS, "nebraska_landsat_albers_30m.tif", "pivots.gpkg", "pivots_mask.tif"),
]


@pytest.mark.parametrize(("folder", "image", "vector", "mask"), CASES)
def test_windowed_rasterisation_matches_reference_masks(
    folder: Path, image: str, vector: str, mask: str
) -> None:
    scene = scene_info(str(folder / image))
    field = "building" if folder == ATLANTA else None  # SpaceNet's attribute: building = "yes"
    (source,) = prepare_vector_labels(str(folder / vector), [scene], BINARY, field, [None])
    labels = mosaic(source, scene.width, scene.height)
    ref = reference(folder / mask)
    assert iou(labels == 1, ref == 1) >= 0.99
    assert not np.any((labels == 1) & (ref == 0))


def test_pixels_outside_the_labels_extent_are_ignored() -> None:
    """Nebraska pivots are outlined in the east only: the unlabelled west is not background."""
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    (source,) = prepare_vector_labels(str(PIVOTS / "pivots.gpkg"), [scene], BINARY, None, [None])
    labels = mosaic(source, scene.width, scene.height)
    assert np.all(labels[:, :100] == 255)  # the western columns hold no labelled polygon
    assert (labels == 0).any() and (labels == 1).sum() == (
        reference(PIVOTS / "pivots_mask.tif") == 1
    ).sum()


@pytest.mark.parametrize("degrees", [0.0, 30.0])
def test_labelled_area_masks_windows_inside_outside_and_across_it(degrees: float) -> None:
    """Windows wholly inside or outside the labelled area skip its rasterisation: every label
    is what rasterising the polygons and the area gives (rotated grids included)."""
    transform = Affine.translation(1000, 2000) @ Affine.rotation(degrees) @ Affine.scale(10, -10)
    scene = SceneInfo("unused.tif", 400, 400, 1, "uint8", None, tuple(transform)[:6], None, ())
    corner = np.array([transform @ (c, r) for c, r in ((60, 50), (330, 40), (300, 350))])
    area = shapely.Polygon(corner).difference(shapely.Point(transform @ (200, 150)).buffer(300))
    fields = np.array([shapely.Point(transform @ (150, 200)).buffer(700)], dtype=object)
    source = VectorLabels(scene, fields, np.array([1], dtype=np.uint8), area)
    shortcuts = set()
    for row in range(0, 400, 40):
        for col in range(0, 400, 40):
            window = Window(col, row, 64, 64)
            at = rasterio.windows.transform(window, transform)
            inside, field = (
                features.rasterize([(g, 1)], out_shape=(64, 64), transform=at, fill=0)
                for g in (area, fields[0])
            )
            expected = np.where(inside == 1, field, IGNORE).astype(np.uint8)
            got = source.rasterize(window)
            assert np.array_equal(got, expected), (row, col)
            shortcuts.add(int(np.all(got == IGNORE)) - int(np.all(got != IGNORE)))
    assert shortcuts == {-1, 0, 1}  # wholly inside, across, wholly outside


def test_all_touched_burns_more_pixels() -> None:
    scene = scene_info(str(ATLANTA / "atlanta_pan_0p5m.tif"))
    path = str(ATLANTA / "atlanta_buildings.geojson")
    (centre,) = prepare_vector_labels(path, [scene], BINARY, None, [None], all_touched=False)
    (touched,) = prepare_vector_labels(path, [scene], BINARY, None, [None], all_touched=True)
    window = Window(0, 0, 900, 900)
    a, b = centre.rasterize(window), touched.rasterize(window)
    assert (b == 1).sum() > (a == 1).sum() and np.all(b[a == 1] == 1)


def _write_reprojected(src_path: Path, dst_path: Path, crs: str) -> None:
    """The reference mask reprojected (nearest) to another CRS, with a nodata border."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": crs, "transform": transform, "width": width,
                   "height": height, "nodata": 200}  # fmt: skip
        with rasterio.open(dst_path, "w", **profile) as dst:
            reproject(
                rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest,
                dst_nodata=200,
            )  # fmt: skip


def test_label_raster_in_another_crs_is_warped_with_nearest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Warped onto the scene's grid, and the log says so (it was silent)."""
    label_path = tmp_path / "pivots_mask_4326.tif"
    _write_reprojected(PIVOTS / "pivots_mask.tif", label_path, "EPSG:4326")
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    cmap = ClassMap.from_dict(
        [{"name": "background", "values": [0]}, {"name": "pivot", "values": [1]}]
    )
    with caplog.at_level(logging.INFO, logger="geo"):
        source = prepare_raster_labels(str(label_path), scene, cmap, None)
    assert source.warp
    assert f"{label_path} is on another grid than {scene.path} (another CRS): its labels" in (
        caplog.text
    )
    labels = mosaic(source, scene.width, scene.height)
    ref = reference(PIVOTS / "pivots_mask.tif")
    assert set(np.unique(labels)) <= {0, 1, 255}
    assert iou(labels == 1, ref == 1) > 0.9  # two nearest resamplings move edges by a pixel
    assert (labels == 255).sum() < 0.05 * labels.size  # nodata corners of the warped raster


def test_label_raster_on_the_scene_grid_is_read_directly() -> None:
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    cmap = ClassMap.from_dict(
        {"unmapped": "background", "classes": [{"name": "bg"}, {"name": "pivot", "values": [1]}]}
    )
    source = prepare_raster_labels(str(PIVOTS / "pivots_mask.tif"), scene, cmap, None)
    assert not source.warp
    assert np.array_equal(
        mosaic(source, scene.width, scene.height), reference(PIVOTS / "pivots_mask.tif")
    )


def test_a_no_data_value_the_class_map_takes_for_a_class_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pivot mask saved with no data 0 (as some tools save masks) for a class map that lists
    0 as background: those pixels stay unlabelled, and the warning says how to learn them; the
    mask without a no-data value, or with one no class lists, is quiet."""
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    cmap = ClassMap.from_dict([{"name": "background", "values": [0]},
                               {"name": "pivot", "values": [1]}])  # fmt: skip
    with rasterio.open(PIVOTS / "pivots_mask.tif") as src:
        profile, codes = src.profile, src.read()
    said = []
    for nodata in (0, None, 200):
        mask = tmp_path / f"mask_{nodata}.tif"
        with rasterio.open(mask, "w", **{**profile, "nodata": nodata}) as dst:
            dst.write(codes)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="geo"):
            prepare_raster_labels(str(mask), scene, cmap, None)
        said.append([r.getMessage() for r in caplog.records])
    mask = tmp_path / "mask_0.tif"
    assert said == [[
        f"{mask}: its no-data value 0 is a label value of class 'background', but no data stays "
        "unlabelled (ignored in training); to learn those pixels as 'background', unset it "
        f"(`gdal_edit.py -unsetnodata {mask}`)"
    ], [], []]  # fmt: skip


def test_agnet_label_raster_without_crs_pairs_pixel_for_pixel() -> None:
    agnet = DATA / "agnet_landsat8_cdl"
    scene = scene_info(str(agnet / "images" / "lc8_2015245_r04_c27.tif"))
    assert scene.crs is None
    cmap = load_class_map(DATA.parent / "agnet_classes.yaml")
    source = prepare_raster_labels(
        str(agnet / "labels" / "cdl_2015245_r04_c27.tif"), scene, cmap, None
    )
    with source.reader() as read:
        labels, unmapped = read(Window(-10, -10, 148, 148))  # passes the scene edge
    codes = reference(agnet / "labels" / "cdl_2015245_r04_c27.tif")
    assert np.all(labels[:10] == 255) and np.all(labels[:, -10:] == 255)
    assert np.all(labels[10:138, 10:138][codes == 5] == 1)
    assert "31" in unmapped and np.all(labels[10:138, 10:138][codes == 31] == 255)


def test_label_errors_are_clear(tmp_path: Path) -> None:
    scene = scene_info(str(ATLANTA / "atlanta_pan_0p5m.tif"))
    other = scene_info(str(ALEXANDRIA / "hag.tif"))
    atlanta = str(ATLANTA / "atlanta_buildings.geojson")
    with pytest.raises(InputError, match="no features overlap scene"):
        prepare_vector_labels(atlanta, [other], BINARY, None, [None])
    with pytest.raises(InputError, match="no field 'crop'"):
        prepare_vector_labels(atlanta, [scene], BINARY, "crop", [None])
    three = ClassMap.from_dict([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    with pytest.raises(InputError, match="pass a label field"):
        prepare_vector_labels(atlanta, [scene], three, None, [None])
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match="no features"):
        prepare_vector_labels(str(empty), [scene], BINARY, None, [None])
    agnet = scene_info(str(DATA / "agnet_landsat8_cdl" / "images" / "lc8_2015245_r04_c27.tif"))
    with pytest.raises(InputError, match="has no CRS"):
        prepare_vector_labels(atlanta, [agnet], BINARY, None, [None])
    with pytest.raises(InputError, match="must match pixel"):
        prepare_raster_labels(str(ATLANTA / "atlanta_buildings_mask.tif"), agnet, BINARY, None)
    with pytest.raises(InputError, match="does not overlap"):
        prepare_raster_labels(str(PIVOTS / "pivots_mask.tif"), scene, BINARY, None)


def test_vector_or_raster_by_suffix() -> None:
    assert is_vector("labels.gpkg") and is_vector("a.geojson") and is_vector("x.shp")
    assert not is_vector("mask.tif")


def test_polygons_of_different_classes_that_overlap_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crop field drawn over a water polygon (a digitising slip) is named, with where the
    first overlap is; fields that only touch, overlap by a sliver along their shared edge, or
    overlap one of their own class, are quiet."""
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    left, bottom, right, top = scene.bounds
    box = lambda x0, x1: shapely.box(left + x0, top - 3000, left + x1, top - 1000)  # noqa: E731
    classes = ClassMap.from_dict([{"name": "background"}, {"name": "crop", "values": ["crop"]},
                                  {"name": "water", "values": ["water"]}])  # fmt: skip
    cases = [
        (["water", "crop"], [box(1000, 3000), box(2000, 4000)], True),
        (["water", "crop"], [box(1000, 3000), box(3000, 5000)], False),  # they touch
        # a sliver along the shared edge (0.5 m of 2 km), as reprojecting or snapping leaves
        (["water", "crop"], [box(1000, 3000.5), box(3000, 5000)], False),
        (["crop", "crop"], [box(1000, 3000), box(2000, 4000)], False),
    ]
    for kinds, geoms, warned in cases:
        labels = tmp_path / "fields.gpkg"
        gpd.GeoDataFrame({"kind": kinds}, geometry=geoms, crs=scene.crs).to_file(labels)
        caplog.clear()
        prepare_vector_labels(str(labels), [scene], classes, "kind", [None])
        said = [r.getMessage() for r in caplog.records if "overlap" in r.getMessage()]
        assert len(said) == warned, said
        if warned:
            x, y = left + 2500, top - 2000
            assert said[0] == (
                f"{labels}: 1 pair(s) of polygons of different classes overlap (the first at "
                f"{x:.6g}, {y:.6g}: crop and water): where they do, the class later in the class "
                "map wins"
            )


def test_features_of_class_0_not_named_background_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A class map that lists only the drawn classes (crop, pivot) makes crop class 0, the
    background, which every pixel between the polygons takes too: said once, naming the file;
    a map whose first class is the background, or whose first class no feature has, is quiet."""
    scene = scene_info(str(PIVOTS / "nebraska_landsat_albers_30m.tif"))
    pivots = gpd.read_file(PIVOTS / "pivots.gpkg")
    labels = tmp_path / "drawn.gpkg"
    pivots.assign(kind=np.where(np.arange(len(pivots)) % 3 == 0, "crop", "pivot")).to_file(labels)
    drawn = [{"name": "crop", "values": ["crop"]}, {"name": "pivot", "values": ["pivot"]}]
    cases = [
        (drawn, True),
        ([{"name": "Background"}, *drawn], False),
        # crop is in no class: class 0 by `unmapped: background`, as asked
        ({"unmapped": "background", "classes": [{"name": "fallow", "values": ["fallow"]},
                                                 *drawn[1:]]}, False),
    ]  # fmt: skip
    for classes, warned in cases:
        caplog.clear()
        prepare_vector_labels(str(labels), [scene], ClassMap.from_dict(classes), "kind", [None])
        said = [r.getMessage() for r in caplog.records if "also the background" in r.getMessage()]
        assert len(said) == warned, said
        if warned:
            crops = int((np.arange(len(pivots)) % 3 == 0).sum())
            assert f"drawn.gpkg: {crops} feature(s) are class 0, 'crop'" in said[0]
            assert "list `- name: background` first" in said[0]
    caplog.clear()  # one warning for the features of several files
    prepare_vector_labels([str(labels)] * 3, [scene], ClassMap.from_dict(drawn), "kind", [None])
    said = [r.getMessage() for r in caplog.records if "also the background" in r.getMessage()]
    assert len(said) == 1 and "drawn.gpkg and 2 more: " in said[0]


def test_features_sharing_an_id_are_read_without_a_warning(tmp_path: Path) -> None:
    """QGIS's `id` field copied with its features (GeoJSON ids repeated): OGR renumbers them,
    and the user sees no RuntimeWarning before the log or the one error line."""
    pivots = gpd.read_file(PIVOTS / "pivots.gpkg")
    labels = tmp_path / "copied.geojson"
    features = [
        {"type": "Feature", "properties": {"id": 7, "kind": "pivot"},
         "geometry": shapely.geometry.mapping(g)}
        for g in pivots.to_crs(4326).geometry
    ]  # fmt: skip
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert field_values(str(labels), "kind") == ["pivot"] * len(pivots)
        assert len(read_vectors(str(labels), ["kind"])) == len(pivots)
    assert [str(w.message) for w in caught] == []
