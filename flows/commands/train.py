"""`convlora-geo train`: fine-tune SAM with an adapter on a tile store (resumable, DDP-ready).

Several GPUs: `--nproc N` (torchrun started here), or `torchrun --nproc-per-node N -m flows.cli
train STORE.zarr ...`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from flows.commands import add_command
from flows.commands.evaluate import class_rows
from flows.parameters import TRAIN


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "train", TRAIN, help="fine-tune SAM on a tile store",
        description="Fine-tune SAM on a tile store's training split, validating every epoch. "
        "Rerunning the same command resumes an interrupted run from OUT/last. "
        "Several GPUs: --nproc N (one process per GPU, started with torchrun).",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", help="print the summary as JSON (default: as text)"
    )
    p.set_defaults(run=run)


def summary_text(summary: dict[str, Any]) -> str:
    """The training summary for a reader: the best checkpoint's validation metrics, the files."""
    lines = [
        f"trained {summary['steps']} steps ({summary['epochs']} epochs) into {summary['run_dir']}"
    ]
    if summary["stopped_early"]:
        lines[0] += ", stopped early (no better validation mIoU in --early-stop epochs)"
    best = summary["best_val"]
    if best is None:
        lines.append("no validation tiles: the adapter holds the last weights")
    else:
        checkpoint = f"step {summary['best_step']} (epoch {summary['best_epoch']})"
        if summary["best_step"] == 0:  # no step beat the model it started from
            checkpoint = "the weights it started from (--init-from; no step did better)"
        lines.append(
            f"best checkpoint: {checkpoint}, validation on {best['pixels']:,} labelled pixels:"
        )
        lines += class_rows(best)
    lines += adapter_lines(summary["run_dir"])
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines)


def adapter_lines(run_dir: str) -> list[str]:
    """Where a run's adapter and metrics are, and the command that predicts with it."""
    return [
        f"adapter: {Path(run_dir) / 'adapter.safetensors'}",
        f"predict with: convlora-geo predict SCENE.tif --model {run_dir}",
        f"metrics: {Path(run_dir) / 'metrics.jsonl'}",
    ]


def run(args: argparse.Namespace) -> int:
    from geo.contracts.tile_store import StoreInfo
    from geo.finetune.config import FinetuneConfig

    config = TRAIN.build(FinetuneConfig, TRAIN.values(args))
    StoreInfo.read(args.store)  # a wrong store fails here, before torch is imported
    from geo.finetune import train_on_store

    summary = train_on_store(config)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print(json.dumps(summary, indent=2) if args.json else summary_text(summary))
    return 0
