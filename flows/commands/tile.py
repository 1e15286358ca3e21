"""`convlora-geo tile`: scenes and labels into a Zarr tile store."""

from __future__ import annotations

import argparse

from flows.commands import int_list, validated
from flows.params import TileParams


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tile", help="tile labelled scenes into a Zarr tile store")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="GDAL-readable rasters")
    p.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="LABEL",
        help="one vector file for all scenes, or one label raster per image",
    )
    p.add_argument("--class-map", required=True, help="JSON or YAML list of classes")
    p.add_argument("--out", required=True, help="the tile store to write (STORE.zarr)")
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--bands", type=int_list, default=None, help="1-based band indexes, e.g. 4,3,2")
    p.add_argument("--label-field", default=None, help="attribute holding the class value")
    p.add_argument(
        "--aoi", default=None, help="polygons of the labelled area (else the labels' extent)"
    )
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--all-touched", action="store_true", help="burn every pixel a polygon touches")
    p.add_argument(
        "--unmapped",
        choices=["ignore", "background"],
        default=None,
        help="label values in no class: ignore (255) or background (default: class map)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a store at --out that was built from other inputs or settings",
    )
    p.add_argument("--dask-address", default=None, help="join an existing Dask scheduler")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = validated(
        TileParams,
        images=args.images,
        labels=args.labels,
        class_map=args.class_map,
        out=args.out,
        tile_size=args.tile_size,
        overlap=args.overlap,
        bands=args.bands,
        label_field=args.label_field,
        aoi=args.aoi,
        val_fraction=args.val_fraction,
        all_touched=args.all_touched,
        unmapped=args.unmapped,
        overwrite=args.overwrite,
        dask_address=args.dask_address,
    )
    params.check()  # bad input stops here, before Prefect starts
    from flows.tile import tile_flow

    store = tile_flow(params)
    print(f"tile store: {store}\ntile index (open in QGIS): {store}/tile_index.gpkg")
    return 0
