"""`convlora-geo train`: fine-tune SAM with an adapter on a tile store (resumable, DDP-ready).

Several GPUs: `torchrun --nproc-per-node N -m flows.cli train STORE.zarr ...`.
"""

from __future__ import annotations

import argparse
import json
import os

from flows.cli import UserError
from flows.commands import int_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune SAM on a tile store",
        description="Fine-tune SAM on a tile store's training split, validating every epoch. "
        "Rerunning the same command resumes an interrupted run from OUT/last. "
        "Several GPUs: torchrun --nproc-per-node N -m flows.cli train ...",
    )
    p.add_argument("store", metavar="STORE.zarr", help="tile store from `convlora-geo tile`")
    p.add_argument("--sam", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "tiny"])
    p.add_argument("--checkpoint", default=None, help="official SAM .pth (else SAM is untrained)")
    p.add_argument(
        "--adapter", default="conv-lora", choices=["conv-lora", "lora", "decoder", "full"]
    )
    p.add_argument("--rank", type=int, default=3, help="LoRA rank")
    p.add_argument("--experts", type=int, default=8, help="Conv-LoRA experts")
    p.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha")
    p.add_argument("--gate", default="hard", choices=["hard", "soft"], help="Conv-LoRA gate")
    p.add_argument(
        "--mask-token-init",
        default="copy",
        choices=["copy", "copy+noise"],
        help="copy (official) or copy+noise (lets SAM trained from scratch separate its queries)",
    )
    p.add_argument("--image-size", type=int, default=1024, help="SAM input side (multiple of 16)")
    p.add_argument(
        "--rgb-bands", type=int_list, default=None, help="source bands fed to SAM's R,G,B: 4,3,2"
    )
    p.add_argument("--out", required=True, help="run folder (RUN_DIR)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="default: 30")
    budget.add_argument("--steps", type=int, default=None, help="optimiser steps in total")
    p.add_argument("--batch-size", type=int, default=1, help="tiles per forward, per process")
    p.add_argument("--accumulate", type=int, default=4, help="forwards per optimiser step")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--loss", default=None, help="criterion name (default: the library's)")
    p.add_argument(
        "--class-weights",
        default=None,
        help="'auto' (median frequency of the training labels) or one number per class: 1,2.5,..",
    )
    p.add_argument("--early-stop", type=int, default=None, metavar="EPOCHS", help="patience")
    p.add_argument("--no-augment", action="store_true", help="no flips or rotations")
    p.add_argument("--seed", type=int, default=42686693)
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics lines")
    p.add_argument("--num-workers", type=int, default=0, help="data loader processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def class_weights(text: str | None) -> str | list[float] | None:
    """`auto`, a comma-separated list of numbers, or None."""
    if text is None or text == "auto":
        return text
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--class-weights {text!r}: give 'auto' or numbers like 1,2.5") from None


def run(args: argparse.Namespace) -> int:
    from geo.training import train_on_store

    options = {
        "epochs": args.epochs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "accumulate": args.accumulate,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup_steps,
        "grad_clip": args.grad_clip,
        "early_stop_patience": args.early_stop,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every,
        "num_workers": args.num_workers,
        "device": args.device,
    }
    if args.loss is not None:
        options["loss"] = args.loss
    summary = train_on_store(
        args.store,
        args.out,
        sam=args.sam,
        sam_checkpoint=args.checkpoint,
        adapter=args.adapter,
        rank=args.rank,
        experts=args.experts,
        alpha=args.alpha,
        gate=args.gate,
        mask_token_init=args.mask_token_init,
        image_size=args.image_size,
        rgb_bands=args.rgb_bands,
        class_weights=class_weights(args.class_weights),
        augment=not args.no_augment,
        progress=not args.no_progress,
        **options,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        print(json.dumps(summary, indent=2))
    return 0
