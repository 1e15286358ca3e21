"""`tile_index.gpkg`: one polygon per tile, to see in QGIS where training tiles came from."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.contracts.tile_store import SPLIT_NAMES, TILE_INDEX, TILE_INDEX_LAYER
from geo.io.raster import SceneInfo, window_polygon
from geo.io.styles import Category, add_gpkg_style
from geo.io.vector import EPOCH, GPKG_OPTIONS
from geo.tiling.plan import Tile

# QGIS shows the tiles coloured by split, outlined, nearly clear: overlapping tiles stay visible
SPLIT_STYLE = [
    Category("train", "train", "#1f78b4"),
    Category("val", "val (validation)", "#ff7f00"),
]
SPLIT_FILL_ALPHA = 30


def write_tile_index(
    folder: Path,
    tiles: list[Tile],
    scenes: list[SceneInfo],
    rows: list[dict[str, Any]],
    split: np.ndarray,
) -> None:
    """Write the index into `folder`: in the scenes' CRS, or EPSG:4326 when they differ."""
    records, geoms = [], []
    crs_names = [s.crs.to_string() if s.crs else "" for s in scenes]  # slow: once per scene
    for r, t in zip(rows, tiles, strict=True):
        scene = scenes[t.scene]
        outline = window_polygon(scene.affine, t.window)
        minx, miny, maxx, maxy = outline.bounds
        records.append(
            {
                "tile": t.index,
                "scene": t.scene,
                "scene_path": scene.path,
                "grid_row": t.grid_row,
                "grid_col": t.grid_col,
                "col_off": int(t.window.col_off),
                "row_off": int(t.window.row_off),
                "width": int(t.window.width),
                "height": int(t.window.height),
                "minx": minx,
                "miny": miny,
                "maxx": maxx,
                "maxy": maxy,
                "crs": crs_names[t.scene],
                "split": SPLIT_NAMES[int(split[t.index])],
                "label_coverage": r["label_coverage"],
                "foreground_fraction": r["foreground_fraction"],
                "valid_fraction": r["valid_fraction"],
            }
        )
        geoms.append(outline)
    crs_set = {s.crs_wkt for s in scenes}
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs=None)
    if len(crs_set) == 1:
        frame = frame.set_crs(scenes[0].crs_wkt)  # None for scenes without a CRS
    else:
        wkt_of = frame["scene"].map(lambda i: scenes[i].crs_wkt)
        parts = [frame[wkt_of == wkt].set_crs(wkt).to_crs(4326) for wkt in sorted(crs_set, key=str)]
        frame = gpd.GeoDataFrame(
            pd.concat(parts).sort_values("tile"), geometry="geometry", crs=4326
        )
    with warnings.catch_warnings():  # scenes without a CRS give an index without one
        warnings.filterwarnings("ignore", "'crs' was not provided")
        frame.to_file(folder / TILE_INDEX, layer=TILE_INDEX_LAYER, engine="pyogrio", **GPKG_OPTIONS)
    add_gpkg_style(
        folder / TILE_INDEX, TILE_INDEX_LAYER, SPLIT_STYLE, field="split", timestamp=EPOCH,
        name="split", description="convlora-geo tiles by split", fill_alpha=SPLIT_FILL_ALPHA,
    )  # fmt: skip
