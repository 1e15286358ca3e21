"""`finetune` flow: tile if needed, fine-tune SAM with an adapter, evaluate on validation."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.params import TileParams, TrainParams
from flows.retries import IO_RETRIES
from flows.tile import build_tile_store
from geo.training import evaluate_on_store, train_on_store


@task(**IO_RETRIES, task_run_name="train-{train.adapter}-{train.sam}")
def train_adapter(store: str, train: TrainParams, run_dir: str) -> dict:
    """Train (resuming an interrupted run in `run_dir`) and return the run summary."""
    return train_on_store(store, run_dir, **train.model_dump())


@task(**IO_RETRIES)
def evaluate_adapter(store: str, run_dir: str, sam_checkpoint: str | None) -> dict:
    """Metrics of the best adapter on the store's validation split."""
    return evaluate_on_store(store, run_dir, split="val", sam_checkpoint=sam_checkpoint)


def epoch_table(run_dir: str) -> list[dict[str, object]]:
    """Per-class validation IoU per epoch, from the run's metrics.jsonl."""
    rows = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") != "epoch" or "val" not in record:
            continue
        val = record["val"]
        row = {
            "epoch": record["epoch"],
            "step": record["step"],
            "loss": round(record["loss"], 4),
            "miou": round(val["miou"], 4),
        }
        row.update(
            {
                f"iou_{name}": None if v is None else round(v, 4)
                for name, v in val["per_class_iou"].items()
            }
        )
        rows.append(row)
    return rows


@flow(name="finetune", log_prints=True)
def finetune_flow(tile: TileParams, train: TrainParams, run_dir: str = "runs/finetune") -> dict:
    """Fine-tune on a tile store built from `tile` (reused when unchanged); returns val metrics."""
    run_path = str(Path(run_dir).resolve())
    store = build_tile_store(tile)
    summary = train_adapter(store, train, run_path)
    metrics = evaluate_adapter(store, run_path, train.sam_checkpoint)
    create_table_artifact(
        key="finetune-epochs",
        table=epoch_table(run_path),
        description="Validation IoU per class and epoch",
    )
    create_markdown_artifact(
        key="finetune-summary",
        markdown=f"# Fine-tuning\n\n- run: `{run_path}`\n"
        f"- adapter: `{run_path}/adapter.safetensors`\n"
        f"- tile store: `{store}`\n- steps: {summary.get('steps')}\n"
        f"- validation mIoU: {metrics['miou']:.4f}\n",
    )
    get_run_logger().info("validation mIoU %.4f, adapter in %s", metrics["miou"], run_path)
    return metrics
