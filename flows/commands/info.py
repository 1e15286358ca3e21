"""`convlora-geo info`: parameter counts of a model configuration, without loading weights."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameter counts for a SAM variant and adapter")
    p.add_argument("--sam", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    p.add_argument(
        "--adapter", default="conv-lora", choices=["conv-lora", "lora", "decoder", "full"]
    )
    p.add_argument("--classes", type=int, default=1, help="number of classes (1 = binary)")
    p.add_argument("--rank", type=int, default=3)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--bands", type=int, default=3, help="input band count")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from convlora.config import ModelConfig
    from convlora.info import parameter_report

    options = dict(
        sam_variant=args.sam,
        adapter=args.adapter,
        num_classes=args.classes,
        rank=args.rank,
        experts=args.experts,
        in_channels=args.bands,
    )
    if args.image_size:
        options["image_size"] = args.image_size
    report = parameter_report(ModelConfig(**options))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"total parameters:     {report['total_params']:>13,}")
    print(f"trainable parameters: {report['trainable_params']:>13,}")
    for group, count in report.get("groups", {}).items():
        print(f"  {group:<20}{count:>13,}")
    return 0
