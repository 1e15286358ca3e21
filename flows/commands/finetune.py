"""`convlora-geo finetune`: tile if needed, train and evaluate, as one Prefect flow."""

from __future__ import annotations

import argparse
import json

from flows.commands import int_list, validated
from flows.params import TileParams, TrainParams


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="tile (if needed), train and evaluate in one flow")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--class-map", required=True)
    p.add_argument(
        "--store", required=True, help="tile store path (reused when inputs are unchanged)"
    )
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--overlap", type=int, default=128)
    p.add_argument("--bands", type=int_list, default=None)
    p.add_argument("--label-field", default=None)
    p.add_argument("--aoi", default=None)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--sam", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    p.add_argument("--checkpoint", default=None, help="official SAM .pth checkpoint")
    p.add_argument(
        "--adapter", default="conv-lora", choices=["conv-lora", "lora", "decoder", "full"]
    )
    p.add_argument("--rank", type=int, default=3)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument(
        "--mask-token-init",
        default="copy",
        choices=["copy", "copy+noise"],
        help="copy+noise lets an untrained SAM tell its class queries apart",
    )
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--accumulate", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tile = validated(
        TileParams,
        images=args.images,
        labels=args.labels,
        class_map=args.class_map,
        out=args.store,
        tile_size=args.tile_size,
        overlap=args.overlap,
        bands=args.bands,
        label_field=args.label_field,
        aoi=args.aoi,
        val_fraction=args.val_fraction,
    )
    train = validated(
        TrainParams,
        sam=args.sam,
        sam_checkpoint=args.checkpoint,
        adapter=args.adapter,
        rank=args.rank,
        experts=args.experts,
        mask_token_init=args.mask_token_init,
        image_size=args.image_size,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        lr=args.lr,
        device=args.device,
    )
    tile.check()  # bad input stops here, before Prefect starts
    train.check(args.out)
    from flows.finetune import finetune_flow

    print(json.dumps(finetune_flow(tile=tile, train=train, run_dir=args.out), indent=2))
    return 0
