"""`convlora-geo info`: parameter counts of a model configuration, without loading weights, and
`--model RUN`: what a trained model is (its SAM, classes, bands, tiles and validation)."""

from __future__ import annotations

import argparse
import json

from convlora.config import ADAPTERS, SAM_VARIANTS
from flows.commands import add_command

CONFIGURATION = ("sam", "adapter", "classes", "rank", "experts", "image_size", "bands")
DEFAULTS: dict[str, object] = {}  # each configuration option's default, to tell what was given


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "info", None, help="parameter counts for a SAM variant and adapter, or what a "
        "trained model is",
        description="Total and trainable parameters of a model configuration, by part "
        "(computed on the meta device: no weights are loaded or allocated); with --model, what "
        "a trained model is: its SAM and adapter, classes, input bands, tiles and validation.",
    )  # fmt: skip
    p.add_argument(
        "--sam", default="vit_b", choices=SAM_VARIANTS, help="SAM variant (default: vit_b)"
    )
    p.add_argument("--adapter", default="conv-lora", choices=ADAPTERS,
                   help="what trains (default: conv-lora)")  # fmt: skip
    p.add_argument(
        "--classes", type=int, default=1, help="classes with background; 1 = binary (default: 1)"
    )
    p.add_argument("--rank", type=int, default=3, help="LoRA rank (default: 3)")
    p.add_argument("--experts", type=int, default=8, help="Conv-LoRA experts (default: 8)")
    p.add_argument("--image-size", type=int, default=None,
                   help="SAM input side (default: the variant's native size)")  # fmt: skip
    p.add_argument("--bands", type=int, default=3, help="input band count (default: 3)")
    p.add_argument("--model", default=None, metavar="RUN",
                   help="a trained model (a run folder, RUN/last or an adapter file) to describe, "
                   "instead of the options above (default: none, the options)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON (default: as text)")
    p.set_defaults(run=run)
    DEFAULTS.update({name: p.get_default(name) for name in CONFIGURATION})


def run(args: argparse.Namespace) -> int:
    from convlora.config import ModelConfig
    from convlora.info import parameter_report

    if args.model is not None:
        from flows.commands.model_info import describe_model

        return describe_model(args, DEFAULTS)
    options: dict[str, object] = dict(
        sam_variant=args.sam,
        adapter=args.adapter,
        num_classes=args.classes,
        rank=args.rank,
        experts=args.experts,
        in_channels=args.bands,
    )
    if args.image_size:
        options["image_size"] = args.image_size
    report = parameter_report(ModelConfig(**options))  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'':<20}{'total':>14}{'trainable':>14}")
    for group, counts in report["groups"].items():
        print(f"{group:<20}{counts['total']:>14,}{counts['trainable']:>14,}")
    print(f"{'all':<20}{report['total_params']:>14,}{report['trainable_params']:>14,}")
    print(f"trainable: {report['trainable_percent']:.2f} %")
    return 0
