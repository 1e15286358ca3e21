"""`convlora-geo demo` (what `make demo` runs): the whole job through the Prefect flows on the
temporary local server, with outputs on the input scene's CRS and grid."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geo.contracts import AdapterMetadata, StoreInfo
from tests.support.cli import cli_process

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples/data/nebraska_center_pivots_landsat/nebraska_landsat_albers_30m.tif"


@pytest.mark.slow
@pytest.mark.prefect
def test_demo_writes_outputs_on_the_scene_grid_and_says_how_to_open_them(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    proc = cli_process("demo", "--out", out, "--steps", "20", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = out / "predictions"
    classes = predictions / "nebraska_landsat_albers_30m_classes.tif"
    polygons = predictions / "nebraska_landsat_albers_30m_polygons.gpkg"
    for path in (classes, polygons, predictions / "nebraska_landsat_albers_30m_classes.qml"):
        assert str(path) in proc.stdout
    assert "QGIS" in proc.stdout
    quicklook = predictions / "nebraska_landsat_albers_30m_quicklook.png"
    assert f"Look first: {quicklook}" in proc.stdout and quicklook.stat().st_size > 0
    assert f"Outputs:\n  quicklook    {quicklook}\n" in proc.stdout
    assert "Validation IoU of the best checkpoint: background " in proc.stdout
    adapter = AdapterMetadata.read(out / "run")
    assert [c.name for c in adapter.classes] == ["background", "pivot"]
    assert adapter.training["step"] > 0
    store = StoreInfo.read(out / "pivots.zarr")
    assert (
        len(gpd.read_file(out / "pivots.zarr" / "tile_index.gpkg", layer="tiles")) == store.n_tiles
    )
    metrics = [
        json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [m for m in metrics if m["kind"] == "step"]
    assert steps[-1]["step"] == 20 and math.isfinite(steps[-1]["loss"])

    with rasterio.open(SCENE) as src, rasterio.open(classes) as pred:
        assert pred.crs == src.crs
        assert pred.transform == src.transform
        assert (pred.width, pred.height) == (src.width, src.height)
        values = np.unique(pred.read(1))
        assert set(values.tolist()) <= {0, 1, 255}
        scene_crs = src.crs
    frame = gpd.read_file(polygons, layer="polygons")
    assert frame.crs == scene_crs
    assert {"class_id", "class_name", "score", "area_m2"} <= set(frame.columns)
    assert (frame["class_name"] == "pivot").all()
