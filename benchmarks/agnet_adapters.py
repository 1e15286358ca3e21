"""Validation and held-out mIoU per adapter kind on the bundled AgNet crop-type tiles (CPU scale).

Tiles grid rows <= 24 into a training store (spatial train/val split) and rows >= 27 into a
held-out store with `examples/agnet_classes.yaml` (background + 7 crops, minor crops ignored),
trains the `tiny` SAM with each adapter kind exactly as `convlora-geo train` does, and evaluates
the best adapter on the held-out store as `convlora-geo evaluate` does:

    .venv/bin/python -m benchmarks.agnet_adapters --steps 300 [--adapters full conv-lora ...]

No SAM checkpoint can be bundled, so the frozen encoder of `conv-lora`, `lora` and `decoder` is
random: their figures show the machinery, and `full` is the honest baseline from scratch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.harness import RESULTS, machine
from geo.contracts.tile_store import StoreInfo
from geo.evaluate import EvaluateConfig, evaluate_on_store
from geo.finetune import FinetuneConfig, train_on_store
from tests.support.stores import agnet_store

ADAPTERS = ("full", "conv-lora", "lora", "decoder")
NIR_SWIR1_RED = [5, 6, 4]  # Landsat-8 B5, B6, B4 feed SAM's three channels at the start


def majority_baseline(train: Path, heldout: Path) -> dict:
    """Held-out metrics of predicting the training split's most frequent class everywhere: its
    IoU is its share of the labelled held-out pixels, every other class scores 0."""
    train_counts = StoreInfo.read(train).class_pixels["train"]
    majority = max(range(len(train_counts)), key=train_counts.__getitem__)
    held = [sum(c) for c in zip(*StoreInfo.read(heldout).class_pixels.values(), strict=True)]
    share = held[majority] / sum(held)
    return {"class": majority, "heldout_miou": share / len(held), "heldout_pixel_accuracy": share}


def run_adapter(adapter: str, train: Path, heldout: Path, run_dir: Path, steps: int) -> dict:
    """Train one adapter kind; its best validation mIoU and its metrics on the held-out store."""
    start = time.perf_counter()
    config = FinetuneConfig(
        store=str(train), out=str(run_dir), sam="tiny", adapter=adapter,
        rgb_bands=NIR_SWIR1_RED, progress=False, steps=steps, batch_size=4, accumulate=1,
        device="cpu",
    )  # fmt: skip
    summary = train_on_store(config)
    train_s = time.perf_counter() - start
    held = evaluate_on_store(
        EvaluateConfig(store=str(heldout), model=str(run_dir), split="all", device="cpu")
    )
    return {
        "adapter": adapter,
        "steps": steps,
        "train_s": round(train_s, 1),
        "best_val_miou": summary.get("best_miou"),
        "heldout_miou": held["miou"],
        "heldout_pixel_accuracy": held["pixel_accuracy"],
        "heldout_per_class_iou": held["per_class_iou"],
        "heldout_tiles": held["tiles"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agnet_adapters")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--adapters", nargs="+", choices=ADAPTERS, default=list(ADAPTERS))
    parser.add_argument("--out", type=Path, default=RESULTS / "agnet_adapters.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train = agnet_store(work / "train.zarr", range(0, 25))
        heldout = agnet_store(work / "heldout.zarr", range(27, 100))
        baseline = majority_baseline(train, heldout)
        print(json.dumps({"majority_baseline": baseline}), flush=True)
        rows = []
        for adapter in args.adapters:
            rows.append(run_adapter(adapter, train, heldout, work / adapter, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| adapter | steps | train s | best val mIoU | held-out mIoU | held-out pixel acc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['adapter']} | {r['steps']} | {r['train_s']} | {r['best_val_miou']:.3f} | "
              f"{r['heldout_miou']:.3f} | {r['heldout_pixel_accuracy']:.3f} |")  # fmt: skip
    print(f"| majority class | | | | {baseline['heldout_miou']:.3f} | "
          f"{baseline['heldout_pixel_accuracy']:.3f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "majority_baseline": baseline, "runs": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
