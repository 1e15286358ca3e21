"""The real training loop on a GPU: `convlora.train.fit` with bf16 autocast on the AgNet tiles.

    python -m benchmarks.cuda_training --variant vit_b --image-size 1024 --steps 200 --out DIR

Fine-tunes an untrained SAM (no checkpoint can be bundled) with each adapter kind on the crop-type
tiles upsampled to `image-size`, validates every epoch, and records images per second, peak CUDA
memory, the loss curve and validation mIoU in DIR/cuda_training.json. It checks the CUDA path
(bf16 autocast, resumable checkpoints, metrics) end to end; the mIoU of an untrained encoder is
not a measure of Conv-LoRA.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.harness import machine
from benchmarks.loss_choice import CLASS_NAMES, load_agnet
from convlora import ModelConfig
from convlora.train import TrainConfig, fit


def as_items(x: torch.Tensor, y: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The dataset contract of `fit`: image (C, H, W) float32, label (H, W) int64."""
    return [{"image": image, "label": label} for image, label in zip(x, y, strict=True)]


def train_once(args: argparse.Namespace, adapter: str, data: dict[str, torch.Tensor]) -> dict:
    model_cfg = ModelConfig(
        sam_variant=args.variant, image_size=args.image_size, adapter=adapter,
        num_classes=len(CLASS_NAMES), in_channels=7, band_init=(4, 5, 3),
        mask_token_init="copy+noise",
    )  # fmt: skip
    train_cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, accumulate=1, lr=args.lr,
        device=args.device, checkpoint_every=args.steps, log_every=10,
    )  # fmt: skip
    run_dir = args.out / f"run-{adapter}"
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    summary = fit(
        model_cfg, train_cfg, as_items(data["x_train"], data["y_train"]),
        as_items(data["x_val"], data["y_val"]), run_dir, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r.get("kind") == "step"]
    return {
        "adapter": adapter,
        "seconds": round(seconds, 1),
        "images_per_s": round(args.steps * args.batch_size / seconds, 2),
        "peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "best_val_miou": summary["best_miou"],
        "adapter_written": (run_dir / "adapter.safetensors").exists(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_training")
    parser.add_argument("--variant", default="vit_b")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--adapters", nargs="+", default=["conv-lora", "lora"])
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("cuda_training: no CUDA device")
    data = load_agnet()
    runs = []
    for adapter in args.adapters:
        runs.append(train_once(args, adapter, data))
        print(json.dumps(runs[-1]), flush=True)
    record = {"machine": machine(), "settings": vars(args) | {"out": str(args.out)}, "runs": runs}
    (args.out / "cuda_training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
