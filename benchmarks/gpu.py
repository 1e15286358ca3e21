"""GPU figures, written to their own results file named after the card.

    python -m benchmarks.gpu [--results-dir DIR] [--repeats N]

Two key figures, each against its goal:

- `convlora_over_lora_step_time`: a Conv-LoRA over a LoRA training step of SAM ViT-H at 1024 px
  (batch 1, bf16 autocast, SDPA attention, both models compiled; goal <= 1.15); the eager ratio is
  reported beside it.
- `encoder_speedup_over_segment_anything`: segment-anything's own ViT-H image encoder in fp32 over
  ours with bf16 autocast, SDPA attention and `torch.compile` (1024 px, batch 1; goal >= 4).

Without a CUDA device it says so and writes nothing (exit status 0). `--cpu-dry-run` runs the same
code on the CPU with the tiny SAM at 64 px and compile's `eager` backend, into DIR/gpu-dry-run.*:
a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import RESULTS, goal, interleaved, machine, ratio, write_results
from convlora import DEFAULT_LOSS, ModelConfig, build_criterion, build_model, build_sam_variant
from convlora.compile import compile_in_place
from convlora.training.optim import build_optimizer

GOAL_STEP_RATIO = 1.15
GOAL_ENCODER_SPEEDUP = 4.0
NUM_CLASSES = 2
SEED = 0


@dataclass(frozen=True)
class Setup:
    """Where and what to measure."""

    variant: str
    image_size: int
    device: torch.device
    backend: str  # torch.compile backend
    repeats: int

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def card_name(name: str) -> str:
    """'NVIDIA H200' -> 'h200': the stem of the results file."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().removeprefix("nvidia").strip()).strip("-")
    return slug or "gpu"


def training_step(setup: Setup, adapter: str, compiled: bool) -> Callable[[], None]:
    """One training step (forward under autocast, Hungarian loss, backward, AdamW) as a call."""
    torch.manual_seed(SEED)
    cfg = ModelConfig(
        sam_variant=setup.variant, image_size=setup.image_size, adapter=adapter,
        num_classes=NUM_CLASSES,
    )  # fmt: skip
    model = build_model(cfg).to(setup.device).train()
    if compiled:
        compile_in_place(model, backend=setup.backend)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=1e-4)
    criterion = build_criterion(DEFAULT_LOSS, NUM_CLASSES)
    x = torch.randn(1, 3, setup.image_size, setup.image_size, device=setup.device)
    y = (x[:, 0] > 0).long()

    def step() -> None:
        with setup.autocast():
            out = model(x)
        criterion(out, y)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        setup.sync()

    return step


def step_ratios(setup: Setup) -> dict[str, Any]:
    """Conv-LoRA over LoRA training-step time, eager and compiled."""
    out: dict[str, Any] = {}
    for mode, compiled in (("eager", False), ("compiled", True)):
        steps = {a: training_step(setup, a, compiled) for a in ("conv-lora", "lora")}
        for step in steps.values():  # compiles, and lets the allocator settle
            step(), step()
        times = interleaved(steps, setup.repeats, warmup=0)
        out[mode] = {"ratio": ratio(times["conv-lora"], times["lora"]), "step_s": times}
        del steps
        if setup.device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def encoder_speedup(setup: Setup) -> dict[str, Any]:
    """segment-anything's fp32 encoder over ours (autocast, SDPA, compiled), same weights."""
    torch.manual_seed(SEED)
    size = setup.image_size
    original = build_sam_variant(setup.variant, size, sdpa=False).image_encoder
    ours = build_sam_variant(setup.variant, size).image_encoder
    ours.load_state_dict(original.state_dict())
    original, ours = original.to(setup.device).eval(), ours.to(setup.device).eval()
    compile_in_place(ours, backend=setup.backend)
    x = torch.randn(1, 3, size, size, device=setup.device)

    def run_original() -> None:
        with torch.inference_mode():
            original(x)
        setup.sync()

    def run_ours() -> None:
        with torch.inference_mode(), setup.autocast():
            ours(x)
        setup.sync()

    times = interleaved({"segment_anything": run_original, "ours": run_ours}, setup.repeats)
    return {"speedup": ratio(times["segment_anything"], times["ours"]), "forward_s": times}


def measure(setup: Setup) -> dict[str, Any]:
    started = time.perf_counter()
    steps = step_ratios(setup)
    encoder = encoder_speedup(setup)
    step_ratio, speedup = steps["compiled"]["ratio"], encoder["speedup"]
    return {
        "key_figures": ["convlora_over_lora_step_time", "encoder_speedup_over_segment_anything"],
        "convlora_over_lora_step_time": step_ratio,
        "convlora_over_lora_step_time_eager": steps["eager"]["ratio"],
        "encoder_speedup_over_segment_anything": speedup,
        "goals": {
            "convlora_over_lora_step_time": goal(step_ratio, "<=", GOAL_STEP_RATIO),
            "encoder_speedup_over_segment_anything": goal(speedup, ">=", GOAL_ENCODER_SPEEDUP),
        },
        "case": f"{setup.variant}@{setup.image_size}px batch 1 on {setup.device.type}",
        "compile_backend": setup.backend,
        "steps": steps,
        "encoder": encoder,
        "notes": [
            "Untrained SAM from the registry (timing does not depend on the weights); training "
            f"steps with bf16 autocast on CUDA, {DEFAULT_LOSS} loss, AdamW, rank 3, 8 experts.",
            "convlora_over_lora_step_time: both models compiled (min wall time); the eager "
            "ratio is under convlora_over_lora_step_time_eager.",
            "encoder_speedup_over_segment_anything: segment-anything's encoder in fp32 over "
            "ours with bf16 autocast, SDPA attention and torch.compile (min wall time).",
        ],
        "section_wall_s": round(time.perf_counter() - started, 1),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cpu-dry-run", action="store_true", help="check the script on the CPU")
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        setup = Setup("tiny", 64, torch.device("cpu"), backend="eager", repeats=1)
        name = "gpu-dry-run"
    elif torch.cuda.is_available():
        setup = Setup("vit_h", 1024, torch.device("cuda"), "inductor", args.repeats)
        name = f"gpu-{card_name(torch.cuda.get_device_name(0))}"
    else:
        print("[bench.gpu] no CUDA device: the GPU benchmarks are skipped, nothing written")
        return 0
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "dry-run" if args.cpu_dry_run else "full",
        "machine": machine(),
        "sections": {"gpu": measure(setup)},
    }
    json_path, md_path = write_results(results, args.results_dir, name)
    print(f"[bench.gpu] wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
