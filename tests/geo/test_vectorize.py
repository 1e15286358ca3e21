"""Windowed polygonisation: regions cut by processing bands are whole again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio import features

from geo.contracts.classes import parse_class_list
from geo.vectorize.polygons import polygonize
from geo.vectorize.regions import regions
from tests.support.paths import DATA

# A real 3-class field-boundary model output (0 background/nodata, 1 field, 2 boundary).
FTW_PREDICTION = DATA / "ftw_austria_sentinel2" / "ftw_model_prediction_3class.tif"
CLASSES = parse_class_list(
    [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "field", "color": "#33a02c"},
        {"id": 2, "name": "boundary", "color": "#e31a1c"},
    ],
    "test",
)


def whole_raster_polygons(path: Path) -> list[tuple[int, shapely.Geometry]]:
    """Reference: rasterio.features.shapes over the whole raster at once, in pixel coordinates."""
    with rasterio.open(path) as src:
        data = src.read(1)
    return sorted(
        ((int(v), shapely.geometry.shape(g)) for g, v in features.shapes(data, data > 0)),
        key=lambda item: (item[0], item[1].bounds[1], item[1].bounds[0], item[1].area),
    )


@pytest.mark.parametrize("band_rows", [7, 16, 64, 1000])
def test_regions_in_bands_equal_polygons_of_the_whole_raster(band_rows: int) -> None:
    expected = whole_raster_polygons(FTW_PREDICTION)
    got = sorted(
        ((r.class_id, r.geometry) for b in regions(FTW_PREDICTION, FTW_PREDICTION,
                                                    band_rows=band_rows) for r in b.regions),
        key=lambda item: (item[0], item[1].bounds[1], item[1].bounds[0], item[1].area),
    )  # fmt: skip
    assert len(got) == len(expected) > 100
    for (c1, g1), (c2, g2) in zip(got, expected, strict=True):
        assert c1 == c2 and g1.geom_type == "Polygon"
        assert shapely.equals(g1, g2)


def test_region_pixels_and_scores_add_up() -> None:
    with rasterio.open(FTW_PREDICTION) as src:
        data = src.read(1)
    found = [r for b in regions(FTW_PREDICTION, FTW_PREDICTION, band_rows=10) for r in b.regions]
    for c in (1, 2):
        mine = [r for r in found if r.class_id == c]
        assert sum(r.pixels for r in mine) == (data == c).sum()
        assert sum(r.score_sum for r in mine) == c * (data == c).sum()
        assert all(r.geometry.area == r.pixels for r in mine)


def test_polygonize_filters_by_area_in_square_metres() -> None:
    frame = polygonize(FTW_PREDICTION, FTW_PREDICTION, CLASSES, min_area=5000.0, simplify=0.0)
    everything = polygonize(FTW_PREDICTION, FTW_PREDICTION, CLASSES, min_area=0.0, simplify=0.0)
    assert len(everything) > len(frame) > 0
    assert frame.area_m2.min() >= 5000.0
    assert (everything.area_m2 % 100 == 0).all()  # whole 10 m pixels
    np.testing.assert_allclose(frame.perimeter_m, frame.geometry.length)
    assert frame.crs.to_epsg() == 32633
