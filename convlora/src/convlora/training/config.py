"""`TrainConfig`: the optimisation recipe (defaults follow the official Conv-LoRA recipe)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from convlora.config import DEFAULT_LOSS, LOSSES
from convlora.errors import ConvLoRAInputError

DEFAULT_EPOCHS = 30
"""Official number of epochs, used when neither `epochs` nor `steps` is given."""

RESULT_NEUTRAL = (
    "device",
    "num_workers",
    "log_every",
    "checkpoint_every",
    "early_stop_patience",
    "compile",
)
"""Settings that may change between a run and its resumption without changing the result
(`compile` changes float rounding only: the compiled model draws the same random numbers)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to fine-tune (convlora-method.md section 2.6).

    Args:
        epochs: passes over the training split (exclusive with `steps`; 30 when neither is set).
        steps: optimiser steps in total (exclusive with `epochs`).
        batch_size: tiles per forward pass and per process.
        accumulate: forward passes per optimiser step (effective batch = batch_size x accumulate
            x processes).
        lr: peak learning rate, decayed linearly to 0.
        weight_decay: AdamW weight decay, not applied to biases, norms, embeddings and tokens.
        warmup_steps: optimiser steps of linear warmup before the decay.
        grad_clip: maximum global gradient norm (0 disables clipping).
        loss: `convlora.losses` criterion: "hungarian" (official) or "semantic".
        class_weights: one weight per class for the loss, or None.
        device: "auto", "cpu", "cuda", "cuda:1", ...
        seed: seeds weights, data order, augmentation and every random generator.
        checkpoint_every: optimiser steps between resumable checkpoints (and one at the end).
        log_every: optimiser steps between `metrics.jsonl` step lines.
        early_stop_patience: epochs without a better validation mIoU before stopping, or None.
        num_workers: DataLoader worker processes.
        compile: compile the model (`torch.compile(fullgraph=True)`: as one graph on the CPU,
            each encoder block and the decoder on its own on accelerators; see
            `convlora.compile`) for training and validation; the first steps then take longer.
    """

    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 1
    accumulate: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    grad_clip: float = 1.0
    loss: str = DEFAULT_LOSS
    class_weights: tuple[float, ...] | None = None
    device: str = "auto"
    seed: int = 42686693
    checkpoint_every: int = 50
    log_every: int = 10
    early_stop_patience: int | None = None
    num_workers: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        self._validate()

    def _validate(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConvLoRAInputError(f"training config: {message}")

        check(
            self.epochs is None or self.steps is None,
            "give either epochs or steps, not both",
        )
        for name in ("epochs", "steps", "early_stop_patience"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} {value} must be >= 1")
        for name in ("batch_size", "accumulate", "checkpoint_every", "log_every"):
            check(getattr(self, name) >= 1, f"{name} {getattr(self, name)} must be >= 1")
        check(self.lr > 0, f"lr {self.lr} must be > 0")
        check(self.weight_decay >= 0, f"weight_decay {self.weight_decay} must be >= 0")
        check(self.warmup_steps >= 0, f"warmup_steps {self.warmup_steps} must be >= 0")
        check(self.grad_clip >= 0, f"grad_clip {self.grad_clip} must be >= 0")
        check(self.loss in LOSSES, f"loss {self.loss!r} not in {list(LOSSES)}")
        check(self.num_workers >= 0, f"num_workers {self.num_workers} must be >= 0")
        if self.class_weights is not None:
            check(
                all(w >= 0 for w in self.class_weights) and any(w > 0 for w in self.class_weights),
                f"class_weights {list(self.class_weights)} must be >= 0 and not all 0",
            )

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the whole run, given the steps of one epoch."""
        epochs = self.max_epochs
        if epochs is not None:
            return epochs * steps_per_epoch
        assert self.steps is not None  # max_epochs is None only when steps is set
        return self.steps

    @property
    def max_epochs(self) -> int | None:
        """Epoch budget, or None when the budget is given in steps."""
        if self.steps is not None:
            return None
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = asdict(self)
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConvLoRAInputError(f"training config: unknown keys {unknown}")
        return cls(**data)

    def result_dict(self) -> dict[str, Any]:
        """The settings that determine the trained weights (what a resumed run must match)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESULT_NEUTRAL}
