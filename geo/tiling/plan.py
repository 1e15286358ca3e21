"""Where the tiles go: each scene's grid of overlapping windows, and their map footprints."""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

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
    """Each tile's footprint for the spatial split: map coordinates where scenes have a CRS."""
    georef = [s.crs is not None for s in scenes]  # parses the WKT: once per scene
    prints = []
    for t in tiles:
        scene = scenes[t.scene]
        prints.append(
            Footprint(
                group=scene.crs_wkt if georef[t.scene] and scene.crs_wkt else f"scene:{t.scene}",
                grid_row=t.grid_row,
                grid_col=t.grid_col,
                polygon=window_polygon(scene.affine, t.window),
                step=step_px * scene.pixel_size,
                georeferenced=georef[t.scene],
            )
        )
    return prints
