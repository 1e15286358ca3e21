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
import csv
import json
import tempfile
import time
from pathlib import Path

from benchmarks.harness import RESULTS, machine
from geo.store import read_attrs
from geo.tiling import tile_scenes
from geo.training import evaluate_on_store, train_on_store

ROOT = Path(__file__).resolve().parents[1]
AGNET = ROOT / "examples" / "data" / "agnet_landsat8_cdl"
CLASS_MAP = ROOT / "examples" / "agnet_classes.yaml"
ADAPTERS = ("full", "conv-lora", "lora", "decoder")
NIR_SWIR1_RED = (5, 6, 4)  # Landsat-8 B5, B6, B4 feed SAM's three channels at the start


def agnet_store(
    out: Path,
    rows: range,
    *,
    count: int | None = None,
    class_map: Path = CLASS_MAP,
    tile_size: int = 128,
    val_fraction: float = 0.2,
    scheduler: str | None = None,
) -> Path:
    """The first `count` (default all) bundled AgNet scenes of grid `rows`, 128 x 128 px each, in
    a tile store of `tile_size` px tiles without overlap."""
    tiles = [r for r in csv.DictReader((AGNET / "tiles.csv").open()) if int(r["grid_row"]) in rows]
    tiles = tiles[:count]
    return tile_scenes(
        [str(AGNET / t["image"]) for t in tiles],
        [str(AGNET / t["label"]) for t in tiles],
        class_map,
        out,
        tile_size=tile_size,
        overlap=0,
        val_fraction=val_fraction,
        scheduler=scheduler,
        progress=False,
    )


def majority_baseline(train: Path, heldout: Path) -> dict:
    """Held-out metrics of predicting the training split's most frequent class everywhere: its
    IoU is its share of the labelled held-out pixels, every other class scores 0."""
    train_counts = read_attrs(train)["class_pixels"]["train"]
    majority = max(range(len(train_counts)), key=train_counts.__getitem__)
    held = [sum(c) for c in zip(*read_attrs(heldout)["class_pixels"].values(), strict=True)]
    share = held[majority] / sum(held)
    return {"class": majority, "heldout_miou": share / len(held), "heldout_pixel_accuracy": share}


def run_adapter(adapter: str, train: Path, heldout: Path, run_dir: Path, steps: int) -> dict:
    """Train one adapter kind; its best validation mIoU and its metrics on the held-out store."""
    start = time.perf_counter()
    summary = train_on_store(
        train, run_dir, sam="tiny", adapter=adapter, image_size=128,
        mask_token_init="copy+noise", rgb_bands=NIR_SWIR1_RED, progress=False,
        steps=steps, batch_size=4, accumulate=1, lr=3e-4, device="cpu",
    )  # fmt: skip
    train_s = time.perf_counter() - start
    held = evaluate_on_store(heldout, run_dir, split="all", device="cpu")
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
