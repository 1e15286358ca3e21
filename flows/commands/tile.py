"""`convlora-geo tile`: scenes and labels into a Zarr tile store."""

from __future__ import annotations

import argparse

from flows.commands import add_command
from flows.local_server import run_flow
from flows.parameters import TILE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "tile", TILE, help="tile labelled scenes into a Zarr tile store",
        description="Tile labelled scenes into a Zarr tile store (reused when run again with "
        "the same inputs; an interrupted run resumes).",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.tiling import TileConfig, check_tiling

    config = TILE.build(TileConfig, TILE.values(args))
    check_tiling(config)  # bad input stops here, before Prefect starts
    store = run_flow("flows.tile", "tile_flow", **config.params())
    print(f"tile store: {store}\ntile index (open in QGIS): {store}/tile_index.gpkg")
    return 0
