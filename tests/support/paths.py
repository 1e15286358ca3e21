"""Where the bundled real data lives (examples/data: each folder has its README and licence)."""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
PIVOTS = DATA / "nebraska_center_pivots_landsat"
NEBRASKA = PIVOTS / "nebraska_landsat_albers_30m.tif"
SCENE = NEBRASKA
PIVOT_LABELS = PIVOTS / "pivots.gpkg"
PIVOT_MASK = PIVOTS / "pivots_mask.tif"
PIVOT_CLASSES = EXAMPLES / "pivots_classes.yaml"
AGNET = DATA / "agnet_landsat8_cdl"
AGNET_CLASSES = EXAMPLES / "agnet_classes.yaml"
AGNET_TILES = list(csv.DictReader((AGNET / "tiles.csv").open()))
AGNET_IMAGE = AGNET / AGNET_TILES[0]["image"]
AGNET_LABEL = AGNET / AGNET_TILES[0]["label"]
RGB_BYTE = DATA / "landsat7_rgb_byte" / "RGB.byte.tif"
SPACENET = DATA / "spacenet_atlanta_buildings" / "atlanta_pan_0p5m.tif"
SPACENET_LABELS = DATA / "spacenet_atlanta_buildings" / "atlanta_buildings.geojson"
FTW = DATA / "ftw_austria_sentinel2" / "austria_s2_2021_winA_winB.tif"
FTW_PREDICTION = DATA / "ftw_austria_sentinel2" / "ftw_model_prediction_3class.tif"
ALEXANDRIA = DATA / "alexandria_lidar_buildings"
BUILDINGS_CLASSES = EXAMPLES / "buildings_classes.yaml"
