"""Where the tiles go: each scene's grid of overlapping windows, and their map footprints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geo.io.frame import MapFrame
from geo.io.grid import GridSpec
from geo.io.raster import SceneInfo, window_polygon
from geo.tiling.split import Footprint


@dataclass(frozen=True)
class Tile:
    """One planned tile: its store index, scene, grid cell, pixel window, and the part of the
    window that is its own (`GridSpec.core`: the tiles' cores cover each scene once)."""

    index: int
    scene: int
    grid_row: int
    grid_col: int
    window: Window
    core: Window


def plan_tiles(
    scenes: list[SceneInfo], tile_size: int, overlap: int
) -> tuple[list[Tile], list[tuple[int, int]]]:
    """Every scene's grid of tiles, scene after scene, and each scene's range of tile indexes."""
    tiles: list[Tile] = []
    ranges: list[tuple[int, int]] = []
    for s, scene in enumerate(scenes):
        first = len(tiles)
        grid = GridSpec(scene.width, scene.height, tile_size, overlap)
        for row, col, window in grid.windows():
            tiles.append(Tile(len(tiles), s, row, col, window, grid.core(row, col)))
        ranges.append((first, len(tiles)))
    return tiles, ranges


def footprints(tiles: list[Tile], scenes: list[SceneInfo], step_px: int) -> list[Footprint]:
    """Each tile's footprint for the spatial split: in one map frame where scenes have a CRS
    (`geo.io.frame`: scenes of one place in several CRSs meet there), per scene without."""
    frame = MapFrame([s.crs_wkt for s in scenes])
    georef = [s.crs is not None and s.crs_wkt is not None for s in scenes]  # parses the WKT
    prints = []
    for t in tiles:
        scene = scenes[t.scene]
        outline = window_polygon(scene.affine, t.window)
        group, polygon = f"scene:{t.scene}", outline
        if georef[t.scene]:
            assert scene.crs_wkt is not None
            group, polygon = frame.place(outline, scene.crs_wkt)
        scale = float(np.sqrt(polygon.area / outline.area)) if outline.area > 0 else 1.0
        prints.append(
            Footprint(
                group=group,
                grid_row=t.grid_row,
                grid_col=t.grid_col,
                polygon=polygon,
                step=step_px * scene.pixel_size * scale,
                georeferenced=georef[t.scene],
            )
        )
    return prints
