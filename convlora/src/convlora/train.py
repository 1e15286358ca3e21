"""Fine-tuning: `fit` trains and writes a run folder, `evaluate` measures a model on a dataset.

The official optimisation recipe is the default (convlora-method.md section 2.6): AdamW with
weight decay 1e-4 (none on biases, norms and tokens), lr 1e-4 decayed linearly to 0, gradient
clipping at 1.0, effective batch 4 by accumulation, bf16 autocast on CUDA and fp32 on CPU.
"""

from __future__ import annotations

from convlora.training.config import TrainConfig
from convlora.training.evaluation import evaluate
from convlora.training.loop import UNTRAINED_WARNING, fit

__all__ = ["UNTRAINED_WARNING", "TrainConfig", "evaluate", "fit"]
