"""Object metrics (FTW's): matching at IoU > 0.5 per tile, against a store's boundary-aware
labels or reference polygons, on real parcels that share edges."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from rasterio import features

from geo.contracts.tile_store import SPLITS, StoreInfo
from geo.errors import InputError
from geo.evaluate import EvaluateConfig, evaluate_on_store
from geo.evaluate.objects import ObjectScore, ReferencePolygons, match
from geo.evaluate.store_scene import StoreScene
from geo.io.grid import GridSpec
from geo.vectorize.objects import label_objects
from tests.support.cli import train
from tests.support.fields import cut
from tests.support.paths import EXAMPLES, FTW_PREDICTION, NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS
from tests.support.stores import tile

PIVOT_BOUNDARIES = EXAMPLES / "pivots_boundaries.yaml"


@pytest.fixture(scope="module")
def quarters_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The pivots cut into quarter fields, tiled with their 30 m outlines; (store, polygons)."""
    folder = tmp_path_factory.mktemp("objects")
    polygons = folder / "quarters.gpkg"
    cut(gpd.read_file(PIVOT_LABELS), 4).to_file(polygons)
    store = tile([NEBRASKA], [polygons], PIVOT_BOUNDARIES, folder / "quarters.zarr",
                 tile_size=64, overlap=16, val_fraction=0.25)  # fmt: skip
    return store, polygons


def ftw_objects() -> np.ndarray:
    with rasterio.open(FTW_PREDICTION) as src:
        return label_objects(src.read(1), boundary_id=2, reach=4)


def test_objects_match_themselves_and_a_one_pixel_shift_keeps_the_large_ones() -> None:
    """The FTW prediction's 272 objects, 5 of them specks of 2 or 3 pixels (which count on
    neither side: fewer than the 4 pixels of the smallest polygon `predict` writes)."""
    objects = ftw_objects()
    sizes = np.bincount(objects.ravel())[1:]
    assert len(sizes) == 272 and (sizes < 4).sum() == 5
    n_ref, n_pred, ious = match(objects, objects)
    assert n_ref == n_pred == len(ious) == 267 and min(ious) == 1.0
    shifted = np.zeros_like(objects)
    shifted[:, 1:] = objects[:, :-1]
    n_ref, n_pred, ious = match(objects, shifted)
    assert len(ious) < n_ref and 0.5 < min(ious) < max(ious) < 1
    assert len(ious) >= (sizes >= 40).sum() * 0.9  # fields over 40 px survive a 1 px shift


def test_score_counts_only_labelled_pixels_and_summarises() -> None:
    objects = ftw_objects()
    score = ObjectScore()
    labelled = np.ones(objects.shape, dtype=bool)
    labelled[:, : objects.shape[1] // 2] = False  # the west half is unlabelled
    empty = np.zeros_like(objects)
    score.add(objects, objects, labelled)
    score.add(objects, empty, labelled)  # nothing found: every reference object missed
    summary = score.summary()
    sizes = np.bincount(objects[:, objects.shape[1] // 2 :].ravel())[1:]
    east = int((sizes >= 4).sum())  # objects in the east half, of 4 pixels or more there
    assert summary["reference"] == 2 * east and summary["predicted"] == east
    assert summary["precision"] == 1.0 and summary["recall"] == 0.5
    assert summary["f1"] == pytest.approx(2 / 3) and summary["median_iou"] == 1.0
    assert ObjectScore().summary()["f1"] is None


def test_f1_is_zero_when_nothing_matched() -> None:
    """Objects found only where the reference has none (or none found): F1 0, not undefined
    (2 TP / (2 TP + FP + FN)), as the one-line summary then says."""
    objects = ftw_objects()
    half = objects.shape[1] // 2
    east, west = objects.copy(), objects.copy()
    east[:, :half], west[:, half:] = 0, 0
    labelled = np.ones(objects.shape, dtype=bool)
    for predicted, precision in ((west, 0.0), (np.zeros_like(objects), None)):
        score = ObjectScore()
        score.add(east, predicted, labelled)
        summary = score.summary()
        assert summary["matched"] == 0 and summary["reference"] > 0
        assert (summary["precision"], summary["recall"], summary["f1"]) == (precision, 0.0, 0.0)


def test_store_labels_and_reference_polygons_give_the_same_parcels(
    quarters_store: tuple[Path, Path],
) -> None:
    """Objects found in the boundary-aware labels of each tile match the quarter polygons
    burnt on the same tile."""
    store_path, polygons = quarters_store
    store = StoreInfo.read(store_path)
    assert [c.name for c in store.classes] == ["background", "pivot", "pivot boundary"]
    reference = ReferencePolygons(str(polygons), store)
    labels = zarr.open_group(str(store_path), mode="r")["labels"]
    score = ObjectScore()
    for index in range(store.n_tiles):
        label = np.asarray(labels[index])
        score.add(reference.objects(index), label_objects(label, 2, 2), label != 255)
    summary = score.summary()
    assert summary["reference"] > 100
    assert summary["recall"] > 0.85 and summary["precision"] > 0.9  # slivers at tile edges
    assert summary["median_iou"] > 0.85


def test_evaluate_reports_object_metrics_beside_pixel_metrics(
    quarters_store: tuple[Path, Path], tmp_path: Path
) -> None:
    store, polygons = quarters_store
    run = train(store, tmp_path / "run")
    own = evaluate_on_store(EvaluateConfig(store=str(store), model=str(run),
                                           device="cpu"))  # fmt: skip
    against = evaluate_on_store(
        EvaluateConfig(store=str(store), model=str(run), reference=str(polygons),
                       device="cpu")
    )  # fmt: skip
    for metrics in (own, against):
        objects = metrics["objects"]
        assert set(metrics) >= {"miou", "per_class_iou", "objects"}
        assert objects["reference"] > 10 and objects["iou_threshold"] == 0.5
        assert objects["matched"] <= min(objects["predicted"], objects["reference"])
    assert own["miou"] == against["miou"]  # pixels are measured against the store either way
    assert (
        abs(own["objects"]["reference"] - against["objects"]["reference"])
        <= 0.15 * (against["objects"]["reference"])
    )


def test_a_field_where_tiles_overlap_counts_once(tmp_path: Path) -> None:
    """Tiles of 128 px overlapping by 48 (36 tiles on the 512 px scene, most pixels in two or
    four of them): the reference fields evaluate counts are those of a partition of the scene
    into the tiles' cores, each pivot once per core it reaches, not once per tile."""
    store = tile([NEBRASKA], [PIVOT_LABELS], PIVOT_CLASSES, tmp_path / "s.zarr",
                 tile_size=128, overlap=48, val_fraction=0.0)  # fmt: skip
    run = train(store, tmp_path / "run")
    config = EvaluateConfig(store=str(store), model=str(run), reference=str(PIVOT_LABELS),
                            device="cpu")  # fmt: skip
    counted = evaluate_on_store(config)["objects"]["reference"]

    info = StoreInfo.read(store)
    labelled = StoreScene(info, 0, SPLITS["all"]).labels(0, 512) != 255
    with rasterio.open(NEBRASKA) as src:
        ids = features.rasterize(
            [(g, i + 1) for i, g in enumerate(gpd.read_file(PIVOT_LABELS).geometry)],
            out_shape=(src.height, src.width), transform=src.transform, dtype="int32",
        )  # fmt: skip
    ids[~labelled] = 0
    grid = GridSpec(512, 512, 128, 48)
    expected = 0
    for row, col, _ in grid.windows():
        core = grid.core(row, col)
        part = ids[
            core.row_off : core.row_off + core.height, core.col_off : core.col_off + core.width
        ]
        expected += len(np.unique(part[part > 0]))
    per_tile = sum(
        len(np.unique(ids[w.row_off : w.row_off + 128, w.col_off : w.col_off + 128])) - 1
        for _, _, w in grid.windows()
    )
    assert 19 <= counted == expected < per_tile


def test_each_part_of_a_multi_part_reference_feature_is_a_field(
    quarters_store: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The quarter fields collected into three multi-part features (QGIS's Collect geometries;
    one a collection holding them) give the reference objects of the single polygons, tile by
    tile; points are refused."""
    store_path, polygons = quarters_store
    store = StoreInfo.read(store_path)
    single = gpd.read_file(polygons)
    collected = tmp_path / "collected.gpkg"
    thirds = np.arange(len(single)) % 3
    parts = [shapely.MultiPolygon(list(single.geometry[thirds == k])) for k in range(3)]
    parts[2] = shapely.GeometryCollection([parts[2]])  # a collection holding a multipolygon
    gpd.GeoDataFrame(geometry=parts, crs=single.crs).to_file(collected)
    with caplog.at_level(logging.INFO, logger="geo.evaluate"):
        multi = ReferencePolygons(str(collected), store)
    assert f"3 multi-part feature(s) taken as their {len(single)} polygons" in caplog.text
    reference = ReferencePolygons(str(polygons), store)
    found = 0
    for index in range(store.n_tiles):
        objects = reference.objects(index)
        n_ref, n_multi, ious = match(objects, multi.objects(index))
        assert n_ref == n_multi == len(ious) and all(iou == 1.0 for iou in ious)
        found += n_ref
    assert found > 100
    points = tmp_path / "points.gpkg"
    single.set_geometry(single.geometry.centroid).to_file(points)
    with pytest.raises(InputError, match="the reference must be polygons, found .* Point"):
        ReferencePolygons(str(points), store)
