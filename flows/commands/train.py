"""`convlora-geo train`: fine-tune SAM with an adapter on a tile store (resumable, DDP-ready).

Several GPUs: `--nproc N` (torchrun started here), or `torchrun --nproc-per-node N -m flows.cli
train STORE.zarr ...`.
"""

from __future__ import annotations

import argparse
import json
import os

from flows.commands import add_command
from flows.parameters import TRAIN


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "train", TRAIN, help="fine-tune SAM on a tile store",
        description="Fine-tune SAM on a tile store's training split, validating every epoch. "
        "Rerunning the same command resumes an interrupted run from OUT/last. "
        "Several GPUs: --nproc N (one process per GPU, started with torchrun).",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.contracts.tile_store import StoreInfo

    StoreInfo.read(args.store)  # a wrong store fails here, before torch is imported
    from geo.finetune import FinetuneConfig, train_on_store

    summary = train_on_store(TRAIN.build(FinetuneConfig, TRAIN.values(args)))
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print(json.dumps(summary, indent=2))
    return 0
