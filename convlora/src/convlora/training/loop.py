"""`fit`: fine-tuning with validation, best/last checkpoints, exact resume and DDP."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from convlora.adapter_files import LATEST_DIR, adapter_paths
from convlora.checkpoint import load_adapter_into, save_adapter
from convlora.compile import compile_in_place
from convlora.config import IGNORE_INDEX, ModelConfig
from convlora.devices import autocast, resolve_device
from convlora.errors import ConvLoRAInputError, SettingsChanged
from convlora.files import atomic_write_json, sha256_file
from convlora.losses import build_criterion
from convlora.model import build_model
from convlora.training.config import TrainConfig
from convlora.training.data import EpochPlan, ItemDataset, make_loader, rank_indices
from convlora.training.distributed import (
    DistInfo,
    barrier,
    broadcast_from_main,
    device_for,
    dist_info_from_env,
    gather_all,
    init_process_group,
    mean_across,
)
from convlora.training.evaluation import evaluate_distributed
from convlora.training.optim import build_optimizer, build_scheduler
from convlora.training.progress import TrainingProgress
from convlora.training.state import (
    STATE_FILE,
    CheckpointDir,
    MetricsLog,
    capture_rng,
    read_resumable,
    restore_rng,
    seed_everything,
)

logger = logging.getLogger(__name__)

POSITION_FILE = "state.json"
UNTRAINED_WARNING = (
    "no SAM checkpoint given: the image encoder starts from random weights (untrained SAM)"
)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint, so a resumed run continues from here."""

    step: int = 0
    epoch: int = 0
    micro_batch: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    best_miou: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    epochs_without_gain: int = 0
    stopped_early: bool = False
    finished: bool = False
    metrics_offset: int = 0
    best_val: dict[str, Any] | None = field(default=None)
    last_val: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_set: ItemDataset,
    val_set: ItemDataset | None,
    run_dir: str | Path,
    *,
    sam_checkpoint: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune a SegmentationSAM and write RUN_DIR; resume from RUN_DIR/last when it exists.

    `init_from` (a run folder or adapter file of the same model config and SAM checkpoint)
    gives the weights a new run starts from instead of fresh adapters; a resumed run continues
    from its own checkpoint, and only on the same start.

    RUN_DIR gets `adapter.safetensors` + `adapter.json` (best validation mIoU), `last/` (the
    adapter of the latest step plus optimiser, scheduler, random states and data position),
    `metrics.jsonl` and `config.json`. Datasets yield dicts with `image` (C, H, W) float32,
    `label` (H, W) int64 with 255 ignored, and optionally `valid` (H, W); a dataset with
    `set_epoch(epoch)` gets it called before each epoch. Under `torchrun` (WORLD_SIZE > 1) the
    processes train one model with DDP, each on its share of every batch; only rank 0 writes.

    Returns a summary: best_miou, best_epoch, best_step, steps, epochs, stopped_early, the
    validation metrics of the best checkpoint (best_val) and of the last epoch (val), and paths.
    """
    info = dist_info_from_env()
    device = device_for(info, resolve_device(train_cfg.device))
    created = init_process_group(info, device)
    try:
        trainer = Trainer(
            model_cfg, train_cfg, train_set, val_set, Path(run_dir), info, device,
            sam_checkpoint=sam_checkpoint, metadata=metadata or {}, class_names=class_names,
            progress=progress, init_from=init_from,
        )  # fmt: skip
        return trainer.run()
    finally:
        if created:
            dist.destroy_process_group()


class Trainer:
    """One training run; `fit` is the public entry point."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        train_set: ItemDataset,
        val_set: ItemDataset | None,
        run_dir: Path,
        info: DistInfo,
        device: torch.device,
        *,
        sam_checkpoint: str | Path | None,
        metadata: dict[str, Any],
        class_names: Sequence[str] | None,
        progress: bool,
        init_from: str | Path | None = None,
    ) -> None:
        self.model_cfg = model_cfg
        self.init_from = init_from
        self.init_sha256 = None if init_from is None else sha256_file(adapter_paths(init_from)[0])
        self.cfg = train_cfg
        self.train_set = train_set
        self.val_set = val_set if val_set is not None and len(val_set) > 0 else None
        self.run_dir = run_dir
        self.info = info
        self.device = device
        self.sam_checkpoint = sam_checkpoint
        self.metadata = metadata
        self.show_progress = progress and info.is_main
        self.plan = EpochPlan(
            len(train_set), train_cfg.batch_size, info.world_size, train_cfg.accumulate
        )
        if self.plan.micro_batches == 0:
            fits = self.plan.num_items // info.world_size
            raise ConvLoRAInputError(
                f"the training split has {self.plan.num_items} tiles, fewer than one batch "
                f"({train_cfg.batch_size} per process x {info.world_size} processes): "
                + (f"a batch size of at most {fits} fits" if fits else
                   f"train with at most {self.plan.num_items} processes")
            )  # fmt: skip
        weights = train_cfg.class_weights
        if weights is not None and len(weights) != model_cfg.num_outputs:
            raise ConvLoRAInputError(
                f"class weights {list(weights)}: {len(weights)} values for "
                f"{model_cfg.num_outputs} classes"
            )
        self.total_steps = train_cfg.total_steps(self.plan.steps)
        self.last = CheckpointDir(run_dir / LATEST_DIR)
        self.log = MetricsLog(run_dir / "metrics.jsonl", enabled=info.is_main)
        self.class_names = list(class_names) if class_names else None
        self.state = Progress()

    # ----------------------------------------------------------------------------- setup
    def spec(self) -> dict[str, Any]:
        """What determines the result; a resumed run must match it exactly."""
        return {
            "model": self.model.config.to_dict(),  # mask_token_init resolved
            "sam_checkpoint_sha256": self.model.sam_checkpoint_sha256,
            "train": self.cfg.result_dict(),
            "world_size": self.info.world_size,
            "train_items": self.plan.num_items,
            "val_items": 0 if self.val_set is None else len(self.val_set),
            "metadata": self.metadata,
            "init_from_sha256": self.init_sha256,
        }

    def build(self) -> None:
        seed_everything(self.cfg.seed)
        if self.sam_checkpoint is None and self.init_from is None and self.info.is_main:
            logger.warning(UNTRAINED_WARNING)
        self.model = build_model(self.model_cfg, self.sam_checkpoint).to(self.device)
        self.model.train()
        self.trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.criterion = build_criterion(
            self.cfg.loss,
            num_classes=self.model_cfg.num_classes,
            ignore_index=IGNORE_INDEX,
            class_weights=self.cfg.class_weights,
        )
        self.optimizer = build_optimizer(self.model, self.cfg.lr, self.cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, self.cfg.warmup_steps)
        # Independent noise per process (noisy gating, point sampling); rank 0 keeps `seed`.
        seed_everything(self.cfg.seed + self.info.rank)

    def wrap(self) -> nn.Module:
        """DDP around the model under torchrun. Every trainable parameter takes part in every
        loss (the experts all run, images without targets keep their masks in the graph), so
        DDP needs no search for unused parameters."""
        if self.cfg.compile:
            compile_in_place(self.model)  # in place: validation runs compiled too
        if not self.info.enabled:
            return self.model
        return DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
        )

    def resume(self) -> bool:
        """Load RUN_DIR/last if present; returns whether it was found."""
        folder = broadcast_from_main(self.last.path() if self.info.is_main else None, self.info)
        if folder is None:
            return False
        folder = Path(folder)
        saved = read_resumable(folder)
        self.check_spec(saved["spec"])
        load_adapter_into(self.model, folder)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = Progress(**saved["progress"])
        self.log.truncate(self.state.metrics_offset)
        restore_rng(saved["rng"][self.info.rank])
        return True

    def check_spec(self, saved: dict[str, Any]) -> None:
        """Refuse to resume a run of other settings. Metadata an earlier version did not record
        (keys absent from the saved run's) is no difference: it describes the run's data, which
        what the metadata did record pins, and an upgrade must not strand a run."""
        recorded = saved.get("metadata") or {}
        differs = [
            d
            for d in _differences(_jsonish(saved), _jsonish(self.spec()))
            if not (d[0].startswith("metadata.") and d[0].split(".")[1] not in recorded)
        ]
        if differs:
            raise SettingsChanged(str(self.run_dir), differs)

    # ----------------------------------------------------------------------------- loop
    def run(self) -> dict[str, Any]:
        self.build()
        resumed = self.resume()
        if not resumed and self.init_from is not None:
            load_adapter_into(self.model, self.init_from)
            if self.info.is_main:
                logger.info("starting from the weights of %s", self.init_from)
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resumed:
                self.log.reset()
            atomic_write_json(self.run_dir / "config.json", self.describe())
        if not resumed and self.init_from is not None and self.val_set is not None:
            self.score_start()
        if resumed and self.info.is_main and self.state.finished:
            logger.info(
                "%s: finished earlier (%d/%d steps): nothing left to train",
                self.run_dir, self.state.step, self.total_steps,
            )  # fmt: skip
        elif resumed and self.info.is_main:
            logger.info(
                "resuming %s at step %d/%d (epoch %d)",
                self.run_dir, self.state.step, self.total_steps, self.state.epoch + 1,
            )  # fmt: skip
        if not self.state.finished:
            self.train(self.wrap())
        barrier(self.info)
        return self.summary()

    def score_start(self) -> None:
        """Validate the weights the run starts from (`init_from`): they are its best until
        training beats them, so that training a model further never leaves a worse one."""
        st = self.state
        val = self.validate()
        st.last_val = st.best_val = val
        st.best_miou, st.best_epoch, st.best_step = val["miou"], 0, 0
        self.save_best()
        self.log.append({"kind": "start", "epoch": 0, "step": 0, "val": val, "best": True})
        if self.info.is_main and val["miou"] is not None:
            logger.info("the starting weights score validation mIoU %.4f", val["miou"])

    def validate(self) -> dict[str, Any]:
        """The model's metrics on the validation set (every process takes part)."""
        assert self.val_set is not None
        return evaluate_distributed(
            self.model, self.val_set, self.info, batch_size=max(self.cfg.batch_size, 4),
            device=self.device, class_names=self.class_names,
        )  # fmt: skip

    def train(self, net: nn.Module) -> None:
        with TrainingProgress(
            self.total_steps, self.state.step, enabled=self.show_progress
        ) as progress:
            while not self.state.finished:
                self.train_epoch(net, progress)

    def train_epoch(self, net: nn.Module, progress: TrainingProgress) -> None:
        """Run the rest of the current epoch (or of the step budget), checkpointing on the way."""
        st = self.state
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(st.epoch)
        indices = rank_indices(self.plan, self.cfg.seed, st.epoch, self.info.rank, st.micro_batch)
        batches = iter(
            make_loader(
                self.train_set, indices, self.cfg.batch_size, self.cfg.num_workers,
                self.cfg.seed + st.epoch,
            )
        )  # fmt: skip
        images, seconds = 0, 0.0
        while True:
            lr = float(self.scheduler.get_last_lr()[0])
            started = time.perf_counter()
            loss, n_images = self.optimizer_step(net, batches)
            seconds += time.perf_counter() - started
            images += n_images
            throughput = images / max(seconds, 1e-9)
            progress.update(loss, lr, throughput)
            if st.step % self.cfg.log_every == 0:
                self.log.append(self.record("step", loss, lr, throughput))
            end_of_epoch = st.micro_batch >= self.plan.micro_batches
            budget_spent = st.step >= self.total_steps
            if end_of_epoch or budget_spent:
                self.end_epoch(lr, throughput, partial=not end_of_epoch)
                st.finished = st.finished or budget_spent
            if st.finished or st.step % self.cfg.checkpoint_every == 0:
                self.save_last()
            if end_of_epoch or st.finished:
                return

    def optimizer_step(self, net: nn.Module, batches: Any) -> tuple[float, int]:
        """Accumulate one group of micro-batches and step; returns the mean loss and image count."""
        n = self.plan.group_size(self.state.micro_batch // self.cfg.accumulate)
        losses = []
        images = 0
        for j in range(n):
            batch = next(batches)
            with _no_sync_unless(j == n - 1, net):
                with autocast(self.device):
                    output = net(batch["image"].to(self.device, non_blocking=True))
                parts = self.criterion(output, self.labels(batch))  # fp32, outside autocast
                (parts["loss"] / n).backward()
            losses.append(parts["loss"].detach().float())
            images += int(batch["image"].shape[0]) * self.info.world_size
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = mean_across(float(torch.stack(losses).mean()), self.info, self.device)
        if not math.isfinite(loss):
            raise ConvLoRAInputError(
                f"the training loss became {loss} at step {self.state.step + 1}; "
                "lower --lr or check the labels"
            )
        self.state.step += 1
        self.state.micro_batch += n
        self.state.epoch_loss_sum += loss
        self.state.epoch_loss_steps += 1
        return loss, images

    def labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["label"].long()
        if "valid" in batch:
            labels = torch.where(batch["valid"].bool(), labels, IGNORE_INDEX)
        return labels.to(self.device, non_blocking=True)

    def end_epoch(self, lr: float, throughput: float, *, partial: bool) -> None:
        """Validate, keep the best adapter, write the epoch line and move to the next epoch."""
        st = self.state
        loss = st.epoch_loss_sum / max(st.epoch_loss_steps, 1)
        record = self.record("epoch", loss, lr, throughput)
        if partial:
            record["partial"] = True
        if self.val_set is not None:
            val = self.validate()
            record["val"] = val
            st.last_val = val
            miou = val["miou"] if val["miou"] is not None else float("-inf")
            improved = st.best_miou is None or miou > st.best_miou
        else:
            miou, improved = float("-inf"), True
        if improved:
            st.best_miou = None if miou == float("-inf") else miou
            st.best_epoch, st.best_step, st.best_val = st.epoch + 1, st.step, st.last_val
            st.epochs_without_gain = 0
            self.save_best()
        else:
            st.epochs_without_gain += 1
        record["best"] = improved
        self.log.append(record)
        patience = self.cfg.early_stop_patience
        if patience is not None and st.epochs_without_gain >= patience:
            st.stopped_early = st.finished = True
            if self.info.is_main:
                logger.info("early stop: no better validation mIoU for %d epochs", patience)
        if not partial:
            st.epoch += 1
            st.micro_batch = 0
            st.epoch_loss_sum, st.epoch_loss_steps = 0.0, 0
            if self.cfg.max_epochs is not None and st.epoch >= self.cfg.max_epochs:
                st.finished = True

    def record(self, kind: str, loss: float, lr: float, throughput: float) -> dict[str, Any]:
        return {
            "kind": kind,
            "epoch": self.state.epoch + 1,
            "step": self.state.step,
            "loss": loss,
            "lr": lr,
            "throughput": throughput,
        }

    # ----------------------------------------------------------------------------- outputs
    def adapter_metadata(self, *, best: bool) -> dict[str, Any]:
        st = self.state
        # 1-based epoch of the step that produced these weights
        current_epoch = st.epoch + 1 if st.micro_batch else st.epoch
        training = {
            "epoch": st.best_epoch if best else current_epoch,
            "step": st.best_step if best else st.step,
            "val": st.best_val if best else st.last_val,
            "train": self.cfg.to_dict(),
        }
        return {**self.metadata, "training": training}

    def save_best(self) -> None:
        if self.info.is_main:
            save_adapter(self.model, self.run_dir, self.adapter_metadata(best=True))

    def save_last(self) -> None:
        """Write RUN_DIR/last atomically: adapter, optimiser, scheduler, RNG states, position."""
        rng = gather_all(capture_rng(), self.info)
        if self.info.is_main:
            self.state.metrics_offset = self.log.offset()

            def fill(folder: Path) -> None:
                save_adapter(self.model, folder, self.adapter_metadata(best=False))
                torch.save(
                    {
                        "spec": self.spec(),
                        "progress": self.state.to_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "rng": rng,
                    },
                    folder / STATE_FILE,
                )
                atomic_write_json(folder / POSITION_FILE, self.position())

            self.last.write(fill)
        barrier(self.info)

    def position(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "total_steps": self.total_steps}

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec(),
            "train": self.cfg.to_dict(),
            "total_steps": self.total_steps,
            "steps_per_epoch": self.plan.steps,
            "sam_checkpoint": None if self.sam_checkpoint is None else str(self.sam_checkpoint),
            "init_from": None if self.init_from is None else str(self.init_from),
        }

    def summary(self) -> dict[str, Any]:
        st = self.state
        return {
            "best_miou": st.best_miou,
            "best_epoch": st.best_epoch,
            "best_step": st.best_step,
            "steps": st.step,
            "epochs": st.epoch,
            "stopped_early": st.stopped_early,
            "best_val": st.best_val,
            "val": st.last_val,
            "run_dir": str(self.run_dir),
            "adapter": str(self.run_dir / "adapter.safetensors"),
            "last": str(self.run_dir / LATEST_DIR),
            "metrics": str(self.run_dir / "metrics.jsonl"),
        }


def _no_sync_unless(last: bool, net: nn.Module) -> contextlib.AbstractContextManager[object]:
    """DDP all-reduces the gradients of the last micro-batch of a step only."""
    if last or not isinstance(net, DistributedDataParallel):
        return contextlib.nullcontext()
    return net.no_sync()


def _differences(saved: Any, current: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) of every setting that differs, leaves only."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            d
            for k in sorted(current)
            for d in _differences(saved.get(k), current[k], f"{key}.{k}" if key else k)
        ]
    return [] if saved == current else [(key, saved, current)]


def _jsonish(value: Any) -> Any:
    """Normalise tuples to lists so that saved and current settings compare equal."""
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonish(v) for v in value]
    return value
