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
    print("\n".join([f"tile store: {store}", *store_lines(store)]))
    print(f"tile index (open in QGIS): {store}/tile_index.gpkg")
    return 0


NO_LABELS = (
    "  no labelled pixel: nothing to train on (does the class map list the label values? do the "
    "labels overlap the scenes and the --aoi?)"
)


def store_lines(store: str) -> list[str]:
    """What a tile store holds: its tiles per split (how many with labels) and its labelled
    pixels per class, so that labels that missed the scenes show at once."""
    from geo.contracts.tile_store import SPLIT_NAMES, StoreInfo, label_coverage, read_split

    info = StoreInfo.read(store)
    codes, labelled = read_split(store), label_coverage(store) > 0
    splits = [
        f"{int(chosen.sum())} {name} ({int(labelled[chosen].sum())} labelled)"
        for code, name in SPLIT_NAMES.items()
        if (chosen := codes == code).any()
    ]
    pixels = [
        sum(split[k] for split in info.class_pixels.values()) for k in range(len(info.classes))
    ]
    total = sum(pixels)
    shares = [
        f"{c.name} {n:,} ({n / max(total, 1):.1%})"
        for c, n in zip(info.classes, pixels, strict=True)
    ]
    return [
        f"  {info.n_tiles} tile{'s' if info.n_tiles != 1 else ''} of {info.tile_size} px, "
        f"overlap {info.overlap}: " + ", ".join(splits),
        f"  labelled pixels: {', '.join(shares)}" if total else NO_LABELS,
    ]
