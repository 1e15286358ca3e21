"""`convlora-geo predict`: class COG, probability COG, polygons and QGIS styles for each scene."""

from __future__ import annotations

import argparse

from flows.commands import validated
from flows.params import PredictParams


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict scenes into COGs and GeoPackage polygons")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", required=True, help="a training run folder or an adapter file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--sam-checkpoint", default=None, help="the base SAM .pth the adapter was trained on"
    )
    p.add_argument("--tile-size", type=int, default=None, help="default: the model's image size")
    p.add_argument("--overlap", type=int, default=None, help="default: 1/8 of the tile size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--min-area", type=float, default=500.0, help="drop polygons under this many m²")
    p.add_argument("--simplify", type=float, default=2.0, help="simplification tolerance in metres")
    p.add_argument("--dask-address", default=None, help="run scenes on an existing Dask scheduler")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = validated(
        PredictParams,
        images=args.images,
        model=args.model,
        out=args.out,
        sam_checkpoint=args.sam_checkpoint,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        min_area=args.min_area,
        simplify=args.simplify,
        dask_address=args.dask_address,
    )
    params.check()  # bad input stops here, before Prefect starts
    from flows.predict import predict_flow

    for outputs in predict_flow(params):
        print("\n".join(f"{name}: {path}" for name, path in outputs.items()))
    return 0
