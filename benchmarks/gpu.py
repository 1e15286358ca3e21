"""GPU figures, written to their own results file named after the card.

    python -m benchmarks.gpu [--results-dir DIR] [--repeats N] [--only PART ...]

Two key figures, each against its goal:

- `convlora_over_lora_step_time`: a Conv-LoRA over a LoRA training step of SAM ViT-H at 1024 px
  (batch 1, bf16 autocast, SDPA attention, both models compiled; goal <= 1.15); the eager ratio is
  reported beside it.
- `encoder_speedup_over_segment_anything`: segment-anything's own ViT-H image encoder in fp32 over
  ours with bf16 autocast, SDPA attention and `torch.compile` (1024 px, batch 1; goal >= 4).

Beside them, `convlora_over_lora_step_time_cudagraphs`: the same steps compiled with CUDA graphs
(inductor's `triton.cudagraphs`, what `mode="reduce-overhead"` turns on), no goal of its own: the
eager Conv-LoRA step is bound by the host's kernel launches, which a graph replay removes.

Parts (`--only`): eager-steps, encoder, compiled-steps, cudagraph-steps; each is written as soon as
it is measured, and a run of some parts keeps the others from the results file. Models are compiled
as `--compile` compiles them (`convlora.compile`): region by region on CUDA. As whole graphs, the
two ViT-H training graphs took over five minutes to compile on an H200 machine's 16 cores
(2026-12-04), most of a 15-minute lease; region by region they compile as a few block graphs each
(on the 2-core CPU VM: 41.5 s against 127.2 s for the first Conv-LoRA ViT-H step).

Without a CUDA device it says so and writes nothing (exit status 0). `--cpu-dry-run` runs the same
code on the CPU with the tiny SAM at 64 px and compile's `eager` backend, into DIR/gpu-dry-run.*:
a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

from benchmarks.harness import RESULTS, goal, interleaved, machine, ratio, write_results
from convlora import DEFAULT_LOSS, ModelConfig, build_criterion, build_model, build_sam_variant
from convlora.compile import compile_in_place, regional_by_default
from convlora.layers import ConvLoRALinear
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


def training_step(
    setup: Setup, adapter: str, dispatch: str = "auto"
) -> tuple[Callable[[], None], torch.nn.Module]:
    """One training step (forward under autocast, Hungarian loss, backward, AdamW) as a call,
    and the model it trains (built on the device; compile it in place to time compiled steps).
    `dispatch` sets Conv-LoRA's expert dispatch (auto: batched on CUDA, grouped on the CPU)."""
    torch.manual_seed(SEED)
    cfg = ModelConfig(
        sam_variant=setup.variant, image_size=setup.image_size, adapter=adapter,
        num_classes=NUM_CLASSES,
    )  # fmt: skip
    with setup.device:
        model = build_model(cfg).train()
    for layer in model.modules():
        if isinstance(layer, ConvLoRALinear):
            layer.dispatch = dispatch
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

    return step, model


def timed_steps(setup: Setup, steps: dict[str, Callable[[], None]]) -> dict[str, Any]:
    """Two untimed steps each (the first call of a compiled model compiles: its seconds are
    reported), then the steps round-robin; Conv-LoRA over LoRA of the fastest."""
    warmup_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step(), step()
        warmup_s[name] = round(time.perf_counter() - start, 1)
    times = interleaved(steps, setup.repeats, warmup=0)
    out = {"ratio": ratio(times["conv-lora"], times["lora"]), "step_s": times,
           "first_two_steps_s": warmup_s}  # fmt: skip
    if "conv-lora grouped" in times:
        out["ratio_grouped"] = ratio(times["conv-lora grouped"], times["lora"])
    return out


def encoder_speedup(setup: Setup) -> dict[str, Any]:
    """segment-anything's fp32 encoder over ours (autocast, SDPA), eager then compiled; same
    weights, same input."""
    torch.manual_seed(SEED)
    size = setup.image_size
    with setup.device:
        original = build_sam_variant(setup.variant, size, sdpa=False).image_encoder.eval()
        ours = build_sam_variant(setup.variant, size).image_encoder.eval()
    ours.load_state_dict(original.state_dict())
    x = torch.randn(1, 3, size, size, device=setup.device)

    def run_original() -> None:
        with torch.inference_mode():
            original(x)
        setup.sync()

    def run_ours() -> None:
        with torch.inference_mode(), setup.autocast():
            ours(x)
        setup.sync()

    contenders = {"segment_anything": run_original, "ours": run_ours}
    eager = interleaved(contenders, setup.repeats)
    compile_in_place(ours, backend=setup.backend)
    start = time.perf_counter()
    run_ours()
    compile_s = round(time.perf_counter() - start, 1)
    compiled = interleaved(contenders, setup.repeats)
    return {
        "speedup": ratio(compiled["segment_anything"], compiled["ours"]),
        "speedup_eager": ratio(eager["segment_anything"], eager["ours"]),
        "compile_s": compile_s,
        "forward_s": {"eager": eager, "compiled": compiled},
    }


PARTS = ("eager-steps", "encoder", "compiled-steps", "cudagraph-steps")
CUDA_GRAPHS = {"triton.cudagraphs": True}
"""Inductor's CUDA graphs (what `mode="reduce-overhead"` turns on): each compiled region's kernels
replay as one graph launch, for steps bound by the host's kernel launches."""


def measure(
    setup: Setup,
    save: Callable[[dict[str, Any]], None],
    parts: Sequence[str] = PARTS,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The figures of `parts`, each saved as soon as it is measured (`save(body)`): a run cut
    short keeps what it measured. Order: eager steps (Conv-LoRA batched and grouped, LoRA), the
    encoder, compiled steps (the longest compiles), steps compiled with CUDA graphs. A `previous`
    body keeps the other parts."""
    started = time.perf_counter()
    body: dict[str, Any] = previous or {
        "key_figures": [],
        "goals": {},
        "case": f"{setup.variant}@{setup.image_size}px batch 1 on {setup.device.type}",
        "compile_backend": setup.backend,
        "steps": {},
    }
    body["notes"] = [
        "Untrained SAM from the registry (timing does not depend on the weights); training "
        f"steps with bf16 autocast on CUDA, {DEFAULT_LOSS} loss, AdamW, rank 3, 8 experts.",
        "convlora_over_lora_step_time: both models compiled as --compile compiles them "
        "(compiled_region_by_region: each encoder block and the decoder on its own; min wall "
        "time); the eager "
        "ratio is under convlora_over_lora_step_time_eager (Conv-LoRA's default dispatch) "
        "and steps.eager.ratio_grouped (the grouped dispatch, one host sync per layer).",
        "convlora_over_lora_step_time_cudagraphs: the compiled steps with CUDA graphs "
        "(steps.cudagraphs.graphs_run_without_cuda_graphs: compiled graphs inductor ran "
        "without them; its log says why).",
        "encoder_speedup_over_segment_anything: segment-anything's encoder in fp32 over "
        "ours with bf16 autocast, SDPA attention and torch.compile (min wall time); "
        "encoder.speedup_eager is the same without compile.",
        "parts_measured: when each part was measured; a run with --only keeps the other "
        "parts' figures from the file it updates.",
    ]
    body.setdefault("parts_measured", {})

    def record(part: str, key: str, value: float, *rule: Any) -> None:
        body[key] = value
        body["parts_measured"][part] = datetime.now(UTC).isoformat(timespec="seconds")
        if rule:
            body["goals"][key] = goal(value, *rule)
            if key not in body["key_figures"]:
                body["key_figures"].append(key)
        body["section_wall_s"] = round(time.perf_counter() - started, 1)
        body["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
        save(body)

    built: dict[str, tuple[Callable[[], None], torch.nn.Module]] = {}
    if "eager-steps" in parts:
        built = {a: training_step(setup, a) for a in ("conv-lora", "lora")}
        grouped_step, _ = training_step(setup, "conv-lora", dispatch="grouped")
        steps = {a: step for a, (step, _) in built.items()} | {"conv-lora grouped": grouped_step}
        body["steps"]["eager"] = timed_steps(setup, steps)
        record("eager-steps", "convlora_over_lora_step_time_eager", body["steps"]["eager"]["ratio"])
    if "encoder" in parts:
        body["encoder"] = encoder_speedup(setup)
        speedup = body["encoder"]["speedup"]
        record(
            "encoder", "encoder_speedup_over_segment_anything", speedup, ">=", GOAL_ENCODER_SPEEDUP
        )
    if "compiled-steps" in parts:
        built = built or {a: training_step(setup, a) for a in ("conv-lora", "lora")}
        for _, model in built.values():
            compile_in_place(model, backend=setup.backend)
        body["compiled_region_by_region"] = regional_by_default(built["lora"][1])
        steps = {a: step for a, (step, _) in built.items()}
        body["steps"]["compiled"] = timed_steps(setup, steps)
        step_ratio = body["steps"]["compiled"]["ratio"]
        record("compiled-steps", "convlora_over_lora_step_time", step_ratio, "<=", GOAL_STEP_RATIO)
    if "cudagraph-steps" in parts:
        body["steps"]["cudagraphs"] = cudagraph_steps(setup)
        graphed_ratio = body["steps"]["cudagraphs"]["ratio"]
        record("cudagraph-steps", "convlora_over_lora_step_time_cudagraphs", graphed_ratio)
    return body


def cudagraph_steps(setup: Setup) -> dict[str, Any]:
    """The training steps of freshly built models compiled as `--compile` does plus CUDA graphs
    (`CUDA_GRAPHS`; the CPU has none), each step marked as a new one for the graphs' memory;
    with how many compiled graphs inductor ran without CUDA graphs (and why, in its log)."""
    skipped = counters["inductor"]["cudagraph_skips"]
    steps = {}
    for adapter in ("conv-lora", "lora"):
        step, model = training_step(setup, adapter)
        compile_in_place(model, backend=setup.backend, options=CUDA_GRAPHS)
        steps[adapter] = marked(step)
    timed = timed_steps(setup, steps)
    return {
        **timed,
        "graphs_run_without_cuda_graphs": counters["inductor"]["cudagraph_skips"] - skipped,
    }


def marked(step: Callable[[], None]) -> Callable[[], None]:
    """`step`, told to CUDA graph trees as the start of a new iteration."""

    def run() -> None:
        torch.compiler.cudagraph_mark_step_begin()
        step()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cpu-dry-run", action="store_true", help="check the script on the CPU")
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS),
        help="measure these parts; the others are kept from the existing results file",
    )  # fmt: skip
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
        "sections": {},
    }
    existing = args.results_dir / f"{name}.json"
    previous = None
    if set(args.only) != set(PARTS) and existing.exists():
        previous = json.loads(existing.read_text())["sections"].get("gpu")
    paths: list[Path] = []

    def save(body: dict[str, Any]) -> None:
        results["sections"]["gpu"] = body
        paths[:] = write_results(results, args.results_dir, name)

    measure(setup, save, args.only, previous)
    print(f"[bench.gpu] wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
