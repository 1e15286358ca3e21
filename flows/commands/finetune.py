"""`convlora-geo finetune`: tile if needed, train and evaluate, as one Prefect flow."""

from __future__ import annotations

import argparse
import json

from flows.commands import add_command
from flows.commands.evaluate import table
from flows.commands.train import adapter_lines
from flows.local_server import run_flow
from flows.parameters import FINETUNE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "finetune", FINETUNE, help="tile (if needed), train and evaluate in one flow",
        description="Tile the scenes into --store (reused while inputs are unchanged), "
        "fine-tune SAM into --out and evaluate the best adapter on the validation split.",
    )  # fmt: skip
    p.add_argument(
        "--json",
        action="store_true",
        help="print the validation metrics as JSON (default: as text)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.finetune import FinetuneConfig
    from geo.finetune.train import check_run_settings
    from geo.tiling import TileConfig, check_tiling

    values = FINETUNE.values(args)
    tile = FINETUNE.build(TileConfig, values)
    train = FINETUNE.build(FinetuneConfig, values)
    request = check_tiling(tile)  # bad input stops here, before Prefect starts
    check_run_settings(train, request.tile_size, lambda: request.store_fingerprint)
    params = {name: values[name] for name in FINETUNE.names}
    metrics = run_flow("flows.finetune", "finetune_flow", **params)
    if "not_evaluated" in metrics:
        lines = [metrics["not_evaluated"]]
    else:
        heading = "the best checkpoint on the validation tiles, predicted as predict does:"
        lines = [heading, table(metrics)]
    text = "\n".join([*lines, *adapter_lines(train.out)])
    print(json.dumps(metrics, indent=2) if args.json else text)
    return 0
