"""Which multi-class loss to default to: Hungarian (official) vs per-pixel semantic, by mIoU.

Trains the `tiny` SAM on the bundled AgNet Landsat-8 / CDL crop-type tiles (rows <= 24 train,
rows >= 27 validation, 6 classes) with each loss, mask-token initialisation and seed, and prints
validation mIoU next to the majority-class baseline. The band adapter starts from NIR, SWIR1 and
red (Landsat-8 B5, B6, B4; a per-pixel MLP on these reaches 0.42 mIoU, on RGB only 0.31):

    .venv/bin/python -m benchmarks.loss_choice --steps 300 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from convlora import ConfusionMatrix, ModelConfig, build_criterion, build_model

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "agnet_landsat8_cdl"
# CDL code -> class id; every other code is class 0 ("other").
CDL_CLASSES = {5: 1, 23: 2, 1: 3, 176: 4, 195: 5}
CLASS_NAMES = ["other", "soybeans", "spring wheat", "corn", "grassland", "wetlands"]


def load_agnet(data: Path = DATA) -> dict[str, torch.Tensor]:
    """Images z-scored with the training split's per-band stats, labels as class ids."""
    with open(data / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    images, labels, grid_rows = [], [], []
    for row in rows:
        with rasterio.open(data / row["image"]) as src:
            images.append(src.read().astype(np.float32))
        with rasterio.open(data / row["label"]) as src:
            cdl = src.read(1)
        label = np.zeros_like(cdl, dtype=np.int64)
        for code, class_id in CDL_CLASSES.items():
            label[cdl == code] = class_id
        labels.append(label)
        grid_rows.append(int(row["grid_row"]))
    x = torch.from_numpy(np.stack(images))
    y = torch.from_numpy(np.stack(labels))
    grid = torch.tensor(grid_rows)
    train, val = grid <= 24, grid >= 27
    mean = x[train].mean(dim=(0, 2, 3), keepdim=True)
    std = x[train].std(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) / std
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val]}


def majority_baseline(data: dict[str, torch.Tensor], num_classes: int) -> dict:
    """Metrics of predicting the most frequent training class everywhere."""
    majority = int(torch.bincount(data["y_train"].flatten(), minlength=num_classes).argmax())
    matrix = ConfusionMatrix(num_classes)
    matrix.update(torch.full_like(data["y_val"], majority), data["y_val"])
    return {"class": CLASS_NAMES[majority], **matrix.compute()}


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """Validation metrics of the argmax of `predict_proba`."""
    model.eval()
    matrix = ConfusionMatrix(num_classes)
    for i in range(0, len(x), 8):
        matrix.update(model.predict_proba(x[i : i + 8]).argmax(1), y[i : i + 8])
    model.train()
    return matrix.compute()


def train_once(
    data: dict[str, torch.Tensor],
    loss: str,
    seed: int,
    steps: int,
    adapter: str = "full",
    image_size: int = 128,
    batch_size: int = 8,
    lr: float = 5e-4,
    token_init: str = "copy",
    band_init: tuple[int, int, int] = (4, 5, 3),
) -> dict:
    """Train the tiny SAM for `steps` AdamW steps; return first/last loss and validation metrics."""
    num_classes = len(CLASS_NAMES)
    torch.manual_seed(seed)
    cfg = ModelConfig(
        sam_variant="tiny",
        image_size=image_size,
        adapter=adapter,
        num_classes=num_classes,
        in_channels=7,
        band_init=band_init,
        mask_token_init=token_init,
    )
    model = build_model(cfg)
    criterion = build_criterion(loss, num_classes)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / steps)
    generator = torch.Generator().manual_seed(seed)
    x, y = data["x_train"], data["y_train"]
    losses = []
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=generator)
        xb, yb = x[idx], y[idx]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        yb = torch.where(flip[:, None, None], yb.flip(-1), yb)
        out = criterion(model(xb), yb)
        optimizer.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(out["loss"].detach()))
    return {
        "loss": loss,
        "token_init": token_init,
        "seed": seed,
        "first_loss": losses[0],
        "last_loss": statistics.mean(losses[-10:]),
        "train_s": round(time.perf_counter() - start, 1),
        **evaluate(model, data["x_val"], data["y_val"], num_classes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loss_choice")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=["hungarian", "semantic"])
    parser.add_argument("--adapter", default="full")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--token-inits", nargs="+", default=["copy", "copy+noise"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_agnet()
    baseline = majority_baseline(data, len(CLASS_NAMES))
    print(json.dumps({"majority_baseline": baseline}), flush=True)
    runs = []
    for loss in args.losses:
        for token_init in args.token_inits:
            for seed in args.seeds:
                run = train_once(
                    data,
                    loss,
                    seed,
                    args.steps,
                    args.adapter,
                    args.image_size,
                    lr=args.lr,
                    token_init=token_init,
                )
                runs.append(run)
                print(json.dumps(run), flush=True)
    summary = {}
    for run in runs:
        entry = summary.setdefault(f"{run['loss']}/{run['token_init']}", {"miou_runs": []})
        entry["miou_runs"].append(round(run["miou"], 4))
    for entry in summary.values():
        entry["miou_mean"] = round(statistics.mean(entry["miou_runs"]), 4)
    print(json.dumps({"summary": summary, "majority_miou": baseline["miou"]}, indent=2))


if __name__ == "__main__":
    main()
