"""`finetune` flow: tile if needed, fine-tune SAM with an adapter, evaluate on validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.commands.evaluate import object_line
from flows.logs import as_parameters
from flows.parameters import FINETUNE
from flows.retries import IO_RETRIES
from flows.run_names import finetune_run, named
from flows.tile import build_tile_store, report_store
from geo.contracts.tile_store import StoreInfo
from geo.evaluate import EvaluateConfig, evaluate_on_store
from geo.finetune import FinetuneConfig, train_on_store
from geo.finetune.train import check_run_settings
from geo.options import flag
from geo.tiling import TileConfig, check_tiling


@task(**IO_RETRIES, task_run_name="train")
def train_adapter(config: FinetuneConfig) -> dict[str, Any]:
    """Train (resuming an interrupted run in the run folder) and return the run summary."""
    return train_on_store(config)


@task(**IO_RETRIES)
def evaluate_adapter(config: EvaluateConfig) -> dict[str, Any]:
    """Metrics of the best adapter on the store's validation split."""
    return evaluate_on_store(config)


def epoch_table(run_dir: str) -> list[dict[str, object]]:
    """Per-class validation IoU per epoch (epoch 0: the weights of `init_from`), from the run's
    metrics.jsonl."""
    rows = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") not in ("start", "epoch") or "val" not in record:
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


@flow(name="finetune", log_prints=True, flow_run_name=named(finetune_run))
@FINETUNE.parameters(
    "Fine-tune SAM on a tile store built from the scenes (reused while they are unchanged) "
    "and evaluate the best adapter on the validation split."
)
def finetune_flow(**params: Any) -> dict[str, Any]:
    tile = FINETUNE.build(TileConfig, params)
    train = FINETUNE.build(FinetuneConfig, params)
    request = check_tiling(tile)
    check_run_settings(train, request.tile_size, lambda: request.store_fingerprint)  # before tiling
    store = build_tile_store(tile)
    holds = report_store(store)
    summary = train_adapter(train.model_copy(update={"store": store}))
    logger = get_run_logger()
    missing = no_validation(store)
    if missing:
        logger.warning(missing)
        metrics: dict[str, Any] = {"store": store, "split": "val", "not_evaluated": missing}
        validation = f"- validation: none ({missing})\n"
    else:
        metrics = evaluate_adapter(
            EvaluateConfig(
                store=store,
                model=train.out,
                split="val",
                sam_checkpoint=train.sam_checkpoint,
                device=train.device,
            )  # fmt: skip
        )
        ious = class_ious(metrics)
        validation = (
            f"- validation mIoU: {metrics['miou']:.4f} (IoU per class: {ious})\n"
            f"- validation {object_line(metrics['objects'])}\n"
        )
        logger.info("validation mIoU %.4f (%s), adapter in %s", metrics["miou"], ious, train.out)
    create_table_artifact(
        key="finetune-epochs",
        table=epoch_table(train.out),
        description="Validation IoU per class and epoch",
    )
    create_markdown_artifact(
        key="finetune-summary",
        description="The run, its tile store and the best checkpoint's validation",
        markdown=f"# Fine-tuning\n\n- run: `{train.out}`\n"
        f"- adapter: `{train.out}/adapter.safetensors`\n"
        f"- tile store: `{store}`\n{holds}- steps: {summary.get('steps')}\n"
        + validation
        + "".join(f"\n**Warning:** {as_parameters(w)}\n" for w in summary.get("warnings", [])),
    )
    return metrics


def no_validation(store: str) -> str | None:
    """Why the store's validation split cannot score the model (it has no labelled pixel:
    too few tiles for a spatial split), or None."""
    info = StoreInfo.read(store)
    if sum(info.class_pixels.get("val", ())) > 0:
        return None
    why = (
        f"it was tiled with {flag('val_fraction')} 0"
        if info.settings.get("val_fraction") == 0
        else "its labelled tiles were too few for a spatial validation split"
    )
    missing = f"{store}: no labelled validation tile ({why}): the model is not evaluated"
    return as_parameters(missing)


def class_ious(metrics: dict[str, Any]) -> str:
    """The IoU of each class, as one line: "background 0.85, pivot 0.09" ("n/a" for a class
    neither in the labels nor in the predictions)."""
    return ", ".join(
        f"{name} {'n/a' if iou is None else f'{iou:.2f}'}"
        for name, iou in metrics["per_class_iou"].items()
    )
