"""Adapters side by side: Conv-LoRA, LoRA and decoder-only at equal rank.

For each (SAM variant, image size) case, the three models are built (untrained, same seed) and
kept alive together; their first training step and first forward are measured for peak memory
(the first step allocates gradients and AdamW state), then training steps and forwards are timed
round-robin, so that a load spike on a shared machine hits every adapter alike. Inputs are real
Nebraska Landsat pixels (z-scored) with the rasterised centre-pivot mask as labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import torch

from benchmarks.data import NEBRASKA, PIVOTS_MASK, normalization, untrained_model
from benchmarks.harness import (
    Budget,
    PeakRSS,
    cuda_peak,
    goal,
    interleaved,
    ratio,
    torch_profile,
)
from convlora import DEFAULT_LOSS, SegmentationSAM, build_criterion
from convlora.devices import autocast
from convlora.info import count_parameters
from convlora.training.optim import build_optimizer

ADAPTERS = ("conv-lora", "lora", "decoder")
RANK = 3
NUM_CLASSES = 2  # background, pivot: the labels are the real pivot mask
GOAL_STEP_RATIO = 1.15
GPU_REPEATS = 10
PROFILE_ROWS = 12


@dataclass(frozen=True)
class Case:
    variant: str
    image_size: int
    batch: int
    device: str = "cpu"

    @property
    def name(self) -> str:
        return f"{self.variant}@{self.image_size}px/{self.device}"


CPU_CASES = [Case("tiny", 256, 2), Case("vit_b", 256, 1), Case("vit_b", 512, 1)]


def cases(budget: Budget) -> list[Case]:
    """CPU cases (vit_b at 1024 px takes ~40 s per forward on a CPU, so 256 and 512 px only);
    vit_b and vit_h at SAM's native 1024 px when a GPU is present."""
    found = []
    if "cpu" in budget.devices:
        found += [Case("tiny", 128, 1)] if budget.quick else CPU_CASES
    if "cuda" in budget.devices and torch.cuda.is_available():
        found += [Case("vit_b", 1024, 2, "cuda"), Case("vit_h", 1024, 1, "cuda")]
    return found


def real_batch(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` z-scored Nebraska crops of `size` px (mirrored copies where the 512 px scene is
    smaller) and their pivot labels (0 / 1)."""
    with rasterio.open(NEBRASKA) as src:
        image = src.read([1, 2, 3], masked=True).astype("float32")
    with rasterio.open(PIVOTS_MASK) as src:
        mask = src.read(1).astype("int64")
    norm = normalization(NEBRASKA, [1, 2, 3])
    mean, std = (np.asarray(norm[k], dtype="float32")[:, None, None] for k in ("mean", "std"))
    image = ((image - mean) / std).filled(0.0)
    while image.shape[-1] < size * batch or image.shape[-2] < size:
        image = np.concatenate([image, image[..., ::-1]], axis=-1)
        image = np.concatenate([image, image[..., ::-1, :]], axis=-2)
        mask = np.concatenate([mask, mask[..., ::-1]], axis=-1)
        mask = np.concatenate([mask, mask[..., ::-1, :]], axis=-2)
    crops = [image[:, :size, k * size : (k + 1) * size] for k in range(batch)]
    labels = [mask[:size, k * size : (k + 1) * size] for k in range(batch)]
    return torch.from_numpy(np.stack(crops).copy()), torch.from_numpy(np.stack(labels).copy())


class Contender:
    """One adapter's model, optimiser and loss, with a timed training step and forward."""

    def __init__(self, case: Case, adapter: str, x: torch.Tensor, y: torch.Tensor) -> None:
        self.device = torch.device(case.device)
        self.model: SegmentationSAM = untrained_model(
            case.variant, case.image_size, adapter, NUM_CLASSES
        ).to(self.device)
        self.criterion = build_criterion(DEFAULT_LOSS, NUM_CLASSES)
        self.optimizer = build_optimizer(self.model, lr=1e-4, weight_decay=1e-4)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.parameters = count_parameters(self.model)

    def train_step(self) -> None:
        self.model.train()
        with autocast(self.device):
            out = self.model(self.x)
            loss = self.criterion(out, self.y)["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()

    def forward(self) -> None:
        self.model.eval()
        with torch.inference_mode(), autocast(self.device):
            self.model.predict_proba(self.x)
        self._sync()

    def peak_mib(self, fn: Callable[[], None]) -> float:
        """Peak memory of one call above what was allocated before it (RSS, or CUDA memory)."""
        if self.device.type == "cuda":
            with cuda_peak(self.device) as peak:
                fn()
            return peak["peak_mib"]
        with PeakRSS() as rss:
            fn()
        return rss.peak_mib

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def measure(case: Case, budget: Budget, profile: bool) -> list[dict[str, Any]]:
    """Rows of figures for the three adapters in one case; with `profile`, the operators that
    take the most time in one Conv-LoRA and one LoRA training step."""
    x, y = real_batch(case.image_size, case.batch)
    contenders = {a: Contender(case, a, x, y) for a in ADAPTERS}
    memory = {
        a: (c.peak_mib(c.train_step), c.peak_mib(c.forward)) for a, c in contenders.items()
    }  # doubles as the warm-up
    if case.device == "cuda":  # steps take a fraction of a second: enough repeats to see shapes
        repeats = GPU_REPEATS  # that top-1 routing makes new to the kernels settle
    else:
        repeats = budget.heavy_repeats if case.variant != "tiny" else budget.repeats
    steps = interleaved({a: c.train_step for a, c in contenders.items()}, repeats, warmup=0)
    forwards = interleaved({a: c.forward for a, c in contenders.items()}, repeats, warmup=0)
    profiles = {}
    if profile and ratio(steps["conv-lora"], steps["lora"]) > GOAL_STEP_RATIO:
        profiles = {a: torch_profile(contenders[a].train_step) for a in ("conv-lora", "lora")}
    rows = []
    for a, c in contenders.items():
        rows.append(
            {
                "case": case.name,
                "variant": case.variant,
                "image_size": case.image_size,
                "batch": case.batch,
                "device": case.device,
                "adapter": a,
                "rank": RANK,
                "trainable_params": c.parameters["trainable_params"],
                "trainable_percent": c.parameters["trainable_percent"],
                "train_step_s": steps[a],
                "forward_s": forwards[a],
                "train_peak_mib": round(memory[a][0], 1),
                "forward_peak_mib": round(memory[a][1], 1),
            }
        )
        if a in profiles:
            rows[-1]["train_step_profile"] = profiles[a][:PROFILE_ROWS]
    if profiles:
        rows[0]["extra_over_lora_profile"] = extra_ops(profiles["conv-lora"], profiles["lora"])
    del contenders
    if case.device == "cuda":
        torch.cuda.empty_cache()
    return rows


def extra_ops(slow: list[dict[str, Any]], fast: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operators whose self CPU time grows most from the `fast` to the `slow` profile."""
    base = {r["op"]: r["self_cpu_s"] for r in fast}
    extra = [
        {
            "op": r["op"],
            "calls": r["calls"],
            "extra_s": round(r["self_cpu_s"] - base.get(r["op"], 0), 3),
        }
        for r in slow
    ]
    total = sum(r["self_cpu_s"] for r in slow) - sum(base.values())
    extra.sort(key=lambda r: r["extra_s"], reverse=True)
    return [{**r, "share_of_extra": round(r["extra_s"] / total, 3) if total > 0 else None}
            for r in extra[:PROFILE_ROWS]]  # fmt: skip


def run(budget: Budget) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ratios: dict[str, dict[str, float]] = {}
    found = cases(budget)
    if not found:
        raise RuntimeError(f"no adapter case to measure on {', '.join(budget.devices)}")
    cpu = [c.name for c in found if c.device == "cpu"]
    headline = cpu[-1] if cpu else found[-1].name
    for case in found:
        case_rows = measure(case, budget, profile=case.name == headline)
        rows += case_rows
        by = {r["adapter"]: r for r in case_rows}
        ratios[case.name] = {
            "convlora_over_lora_step_time": ratio(
                by["conv-lora"]["train_step_s"], by["lora"]["train_step_s"]
            ),
            "convlora_over_lora_step_time_median": ratio(
                by["conv-lora"]["train_step_s"], by["lora"]["train_step_s"], "median"
            ),
            "convlora_over_lora_step_cpu_time": ratio(
                by["conv-lora"]["train_step_s"], by["lora"]["train_step_s"], cpu=True
            ),
            "convlora_over_lora_forward_time": ratio(
                by["conv-lora"]["forward_s"], by["lora"]["forward_s"]
            ),
            "lora_over_decoder_step_time": ratio(
                by["lora"]["train_step_s"], by["decoder"]["train_step_s"]
            ),
        }
    key = ratios[headline]["convlora_over_lora_step_time"]
    result: dict[str, Any] = {
        "key_figures": ["convlora_over_lora_step_time"],
        "convlora_over_lora_step_time": key,
        "headline_case": headline,
        "goals": {"convlora_over_lora_step_time": goal(key, "<=", GOAL_STEP_RATIO)},
        "ratios": ratios,
        "rows": rows,
        "notes": [
            f"Untrained SAM from the registry (no official checkpoints here); rank {RANK}, "
            f"alpha 32, 8 experts, targets qkv, {NUM_CLASSES} classes, {DEFAULT_LOSS} loss, "
            "AdamW; inputs are real Nebraska Landsat crops with the pivot mask as labels.",
            f"Key figure: ratio of the fastest Conv-LoRA to the fastest LoRA training step on "
            f"{headline}; other cases under `ratios`.",
            "Peak memory: first training step (gradients and AdamW state allocated) and first "
            "forward, above the RSS before it (CPU, high-water mark reset per call) or above the "
            "CUDA memory allocated before it (GPU rows; bf16 autocast there).",
        ],
        "tables": {
            "per adapter (min seconds)": [
                {
                    "case": r["case"],
                    "adapter": r["adapter"],
                    "trainable params": r["trainable_params"],
                    "train step s": r["train_step_s"]["min"],
                    "forward s": r["forward_s"]["min"],
                    "train peak MiB": r["train_peak_mib"],
                    "forward peak MiB": r["forward_peak_mib"],
                }
                for r in rows
            ]
        },
    }
    for r in rows:
        if "train_step_profile" in r:
            title = f"torch profile of one {r['adapter']} training step, {r['case']}"
            result["tables"][title] = r["train_step_profile"]
        if "extra_over_lora_profile" in r:
            extra = r["extra_over_lora_profile"]
            result["tables"]["operators Conv-LoRA adds over LoRA (self CPU s)"] = extra
            top = ", ".join(f"{e['op']} +{e['extra_s']} s" for e in extra[:4])
            result["notes"].append(
                f"Goal missed by {result['goals']['convlora_over_lora_step_time']['missed_by']:.0%}"
                f": the profiled Conv-LoRA step spends its extra time mostly in {top}."
            )
    gpu = [name for name in ratios if name.endswith("/cuda")]
    if gpu:
        result["convlora_over_lora_step_time_gpu"] = {
            name: ratios[name]["convlora_over_lora_step_time"] for name in gpu
        }
    return result
