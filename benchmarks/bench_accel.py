"""What SDPA attention and `torch.compile` buy on the CPU.

`sdpa_encoder_speedup`: segment-anything's own attention over ours (`F.scaled_dot_product_attention`
with the relative positions as an additive mask), the forward time of the same ViT-B image encoder
(same weights, 512 px, fp32); above 1 means ours is faster.

`compiled_convlora_step_speedup`: an eager over a compiled (`convlora.compile`, inductor, whole
model as one graph) Conv-LoRA training step of the tiny SAM; above 1 means compiled is faster.
Compiling takes minutes on a small CPU, so the figure is for the tiny variant; in quick mode the
graph is only traced (`eager` backend), a check of the harness, not a measurement.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.harness import Budget, goal, interleaved, ratio
from convlora import DEFAULT_LOSS, ModelConfig, build_criterion, build_model, build_sam_variant
from convlora.compile import compile_in_place
from convlora.training.optim import build_optimizer

SEED = 0
ENCODER_CASE = ("vit_b", 512)
STEP_CASE = ("tiny", 256, 2)  # variant, image size, batch
QUICK_ENCODER_CASE = ("tiny", 128)
QUICK_STEP_CASE = ("tiny", 64, 1)
NUM_CLASSES = 2


def encoders(variant: str, image_size: int) -> dict[str, torch.nn.Module]:
    """segment-anything's image encoder and ours (SDPA attention) with the same weights."""
    torch.manual_seed(SEED)
    original = build_sam_variant(variant, image_size, sdpa=False).image_encoder.eval()
    ours = build_sam_variant(variant, image_size).image_encoder.eval()
    ours.load_state_dict(original.state_dict())
    return {"segment_anything": original, "sdpa": ours}


def encoder_speedup(budget: Budget) -> dict[str, Any]:
    variant, size = QUICK_ENCODER_CASE if budget.quick else ENCODER_CASE
    models = encoders(variant, size)
    x = torch.randn(1, 3, size, size)

    def forward(model: torch.nn.Module) -> Any:
        def run() -> None:
            with torch.inference_mode():
                model(x)

        return run

    with torch.inference_mode():
        difference = (models["sdpa"](x) - models["segment_anything"](x)).abs().max()
    times = interleaved({k: forward(m) for k, m in models.items()}, budget.heavy_repeats + 1)
    return {
        "case": f"{variant}@{size}px encoder forward, fp32",
        "speedup": ratio(times["segment_anything"], times["sdpa"]),
        "speedup_cpu_time": ratio(times["segment_anything"], times["sdpa"], cpu=True),
        "max_abs_difference": float(difference),
        "forward_s": times,
    }


class Step:
    """A Conv-LoRA training step (forward, Hungarian loss, backward, AdamW) of one model."""

    def __init__(self, variant: str, size: int, batch: int) -> None:
        torch.manual_seed(SEED)
        cfg = ModelConfig(
            sam_variant=variant, image_size=size, adapter="conv-lora", num_classes=NUM_CLASSES
        )
        self.model = build_model(cfg).train()
        self.optimizer = build_optimizer(self.model, lr=1e-4, weight_decay=1e-4)
        self.criterion = build_criterion(DEFAULT_LOSS, NUM_CLASSES)
        g = torch.Generator().manual_seed(SEED)
        self.x = torch.randn(batch, 3, size, size, generator=g)
        self.y = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=g)

    def __call__(self) -> None:
        loss = self.criterion(self.model(self.x), self.y)["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def compile_speedup(budget: Budget) -> dict[str, Any]:
    variant, size, batch = QUICK_STEP_CASE if budget.quick else STEP_CASE
    backend = "eager" if budget.quick else "inductor"
    eager, compiled = Step(variant, size, batch), Step(variant, size, batch)
    compile_in_place(compiled.model, backend=backend)
    started = time.perf_counter()
    compiled()  # compiles forward and backward
    compile_s = time.perf_counter() - started
    times = interleaved({"eager": eager, "compiled": compiled}, budget.repeats + 2)
    return {
        "case": f"{variant}@{size}px batch {batch} Conv-LoRA training step, fp32",
        "backend": backend,
        "compile_s": compile_s,
        "speedup": ratio(times["eager"], times["compiled"]),
        "speedup_cpu_time": ratio(times["eager"], times["compiled"], cpu=True),
        "step_s": times,
    }


def run(budget: Budget) -> dict[str, Any]:
    sdpa = encoder_speedup(budget)
    compiled = compile_speedup(budget)
    keys = ["sdpa_encoder_speedup", "compiled_convlora_step_speedup"]
    values = {keys[0]: sdpa["speedup"], keys[1]: compiled["speedup"]}
    return {
        "key_figures": keys,
        **values,
        "goals": {key: goal(values[key], ">=", 1.0) for key in keys},
        "sdpa": sdpa,
        "compile": compiled,
        "notes": [
            f"sdpa_encoder_speedup: segment-anything's attention / ours, min wall time of the "
            f"{sdpa['case']} (same weights; largest output difference "
            f"{sdpa['max_abs_difference']:.1e}).",
            f"compiled_convlora_step_speedup: eager / compiled ({compiled['backend']}), min wall "
            f"time of the {compiled['case']}; compiling took {compiled['compile_s']:.0f} s.",
            "Ratios of process CPU time are under `speedup_cpu_time` (a check on a loaded "
            "machine).",
        ],
        "tables": {
            "min seconds": [
                {
                    "measurement": "encoder forward, segment-anything attention",
                    "s": sdpa["forward_s"]["segment_anything"]["min"],
                },
                {
                    "measurement": "encoder forward, SDPA attention",
                    "s": sdpa["forward_s"]["sdpa"]["min"],
                },
                {
                    "measurement": "Conv-LoRA training step, eager",
                    "s": compiled["step_s"]["eager"]["min"],
                },
                {
                    "measurement": "Conv-LoRA training step, compiled",
                    "s": compiled["step_s"]["compiled"]["min"],
                },
            ]  # fmt: skip
        },
    }
