"""Timing, memory and machine facts shared by the benchmark sections."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Budget:
    """How hard to measure: `quick` keeps every section to seconds (a smoke test of the harness)."""

    quick: bool

    @property
    def repeats(self) -> int:
        return 1 if self.quick else 3


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict[str, float]:
    """min / median / max wall seconds of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def peak_rss_of(code: str, timeout: int = 1800) -> dict[str, Any]:
    """Run Python `code` in a fresh interpreter; its peak RSS in MiB and wall seconds.

    The code may print one JSON object on its last line; it is returned under "result".
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code + "\nimport resource, json; print(json.dumps({'__maxrss_kib': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rss = lines[-1]["__maxrss_kib"] / 1024
    result = lines[-2] if len(lines) > 1 else None
    return {"peak_rss_mib": rss, "wall_s": time.perf_counter() - start, "result": result}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "platform": platform.platform(),
    }


def write_results(results: dict[str, Any], name: str = "latest") -> tuple[Path, Path]:
    """Write `<name>.json` and a readable `<name>.md` into benchmarks/results/ (atomically)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    for path, text in ((json_path, json.dumps(results, indent=2)), (md_path, to_markdown(results))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    return json_path, md_path


def to_markdown(results: dict[str, Any]) -> str:
    """A readable report: the machine, then each section's key figures and raw timings."""
    lines = ["# Benchmark results", "", f"Run: {results['started']} ({results['mode']} mode)", ""]
    lines += ["| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in results["machine"].items()]
    for section, body in results["sections"].items():
        lines += ["", f"## {section}", "", "```json", json.dumps(body, indent=2), "```"]
    return "\n".join(lines)
