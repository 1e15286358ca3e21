"""`convlora-geo ingest`: predict scenes in a folder or bucket that this model has not seen yet."""

from __future__ import annotations

import argparse

from flows.commands import validated


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="predict new scenes found under a folder or URL")
    p.add_argument("source", help="folder, fsspec URL or single scene")
    p.add_argument("--pattern", default="*.tif")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sam-checkpoint", default=None)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--min-area", type=float, default=500.0)
    p.add_argument("--simplify", type=float, default=2.0)
    p.add_argument("--dask-address", default=None)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flows.ingest import IngestParams, ingest_flow
    from geo.predict import check_prediction

    params = validated(
        IngestParams,
        source=args.source,
        pattern=args.pattern,
        model=args.model,
        out=args.out,
        sam_checkpoint=args.sam_checkpoint,
        batch_size=args.batch_size,
        device=args.device,
        min_area=args.min_area,
        simplify=args.simplify,
        dask_address=args.dask_address,
    )
    check_prediction([], params.model, params.out, sam_checkpoint=params.sam_checkpoint)
    done = ingest_flow(params)
    print(f"predicted {len(done)} new scene(s) into {params.out}")
    return 0
