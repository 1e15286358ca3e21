"""Timing, memory, profiles and machine facts shared by the benchmark sections."""

from __future__ import annotations

import contextlib
import cProfile
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
    devices: tuple[str, ...] = ("cpu", "cuda")

    @property
    def repeats(self) -> int:
        """Timed repeats of cheap measurements."""
        return 1 if self.quick else 3

    @property
    def noisy_repeats(self) -> int:
        """Timed repeats of cheap measurements whose runs vary widely (tiling: on the 2-core VM
        one 0.3 s run in a process took 0.28 to 0.47 s, two chains and their writer threads
        sharing two cores, where the plain read varied under 2 %; with 3 the minimum was left to
        chance)."""
        return 1 if self.quick else 10

    @property
    def heavy_repeats(self) -> int:
        """Timed repeats of measurements that take seconds each (vit_b on a CPU): with 2, the
        vit_b Conv-LoRA/LoRA ratio of three full runs spread from 0.96 to 1.17 (medians 1.06)."""
        return 1 if self.quick else 4


def summary(samples: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    """min / median / max (and every sample) of wall seconds; the same of the process's CPU
    seconds (all threads) when given, a load-independent check on a shared machine."""
    out: dict[str, Any] = {
        "min": min(samples),
        "median": statistics.median(samples),
        "max": max(samples),
        "samples": samples,
    }
    if cpu:
        out["cpu"] = {"min": min(cpu), "median": statistics.median(cpu), "max": max(cpu)}
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, dict[str, Any]]:
    """Time several functions round-robin (a, b, c, a, b, c, ...), so that a load spike on a
    shared machine hits every contender alike; `summary` of each after `warmup` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: summary(wall[name], cpu[name]) for name in fns}


def ratio(a: dict[str, Any], b: dict[str, Any], stat: str = "min", cpu: bool = False) -> float:
    """a / b of one statistic of two `summary` dicts (min: the least disturbed run), of wall
    seconds or of CPU seconds."""
    if cpu:
        a, b = a["cpu"], b["cpu"]
    return a[stat] / b[stat]


class PeakRSS:
    """Peak resident memory of this process inside a `with` block, in MiB above the RSS at its
    start: Linux's high-water mark is reset on entry (after returning freed heap to the OS), so
    a block measured after others is not hidden by their peaks. Elsewhere a sampling thread."""

    def __init__(self) -> None:
        self.peak_mib = float("nan")
        self.start_mib = float("nan")
        self._start = 0
        self._max = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        gc.collect()
        _malloc_trim()
        self._start = _rss()
        self.start_mib = self._start / 2**20
        if not _reset_high_water_mark():
            self._max = self._start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = self._max
        else:
            peak = _high_water_mark()
        self.peak_mib = (peak - self._start) / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max = max(self._max, _rss())


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _high_water_mark() > 0


def _high_water_mark() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def profile_top(fn: Callable[[], object], limit: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Run `fn` once under cProfile: the `limit` functions with the most cumulative time and
    the `limit` with the most own time (main thread only: run worker pools synchronously to
    see inside them)."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(path).parent.name}/{Path(path).name}:{line} " if line else ""
        rows.append({"function": f"{where}{name}", "calls": calls, "own_s": round(own, 3),
                     "cumulative_s": round(cumulative, 3)})  # fmt: skip
    return {
        key: sorted(rows, key=lambda r: r[key], reverse=True)[:limit]
        for key in ("cumulative_s", "own_s")
    }


def torch_profile(fn: Callable[[], object]) -> list[dict[str, Any]]:
    """Run `fn` once under the torch profiler: every operator by self CPU time (seconds, and
    its share of the total), most first."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3),
            "share": round(e.self_cpu_time_total / total, 3),
        }
        for e in events
    ]


def goal(value: float, op: str, target: float) -> dict[str, Any]:
    """Whether `value` meets `op` ("<=" or ">=") `target`, and by how much it misses (relative)."""
    met = value <= target if op == "<=" else value >= target
    miss = 0.0 if met else abs(value - target) / target
    return {"goal": f"{op} {target}", "value": value, "met": met, "missed_by": round(miss, 4)}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


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
        "load_average_at_start": load_average(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One line naming the machine, for reports."""
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, torch {info['torch']} "
        f"({info['torch_threads']} threads), device {info['device']}, "
        f"load {'/'.join(str(v) for v in info.get('load_average_at_start', []))}"
    )


def write_results(results: dict[str, Any], directory: Path, name: str) -> tuple[Path, Path]:
    """Write `<name>.json` and a readable `<name>.md` into `directory` (atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{name}.json", directory / f"{name}.md"
    for path, text in ((json_path, json.dumps(results, indent=2)), (md_path, to_markdown(results))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    return json_path, md_path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_markdown(results: dict[str, Any]) -> str:
    """A readable report: the machine, the key figures against their goals, then each section's
    notes, tables and raw figures."""
    lines = ["# Benchmark results", "", f"Run: {results['started']} ({results['mode']} mode)", ""]
    lines += [f"Machine: {machine_line(results['machine'])}", ""]
    lines += ["| machine | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in results["machine"].items()]
    lines += ["", "## Key figures", "", "| section | figure | value | goal | met |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for section, body in results["sections"].items():
        goals = body.get("goals", {})
        for key in body.get("key_figures", []):
            g = goals.get(key)
            met = "" if g is None else ("yes" if g["met"] else f"no (by {g['missed_by']:.0%})")
            target = g["goal"] if g else ""
            lines.append(f"| {section} | `{key}` | {_fmt(body.get(key))} | {target} | {met} |")
        if "error" in body:
            lines.append(f"| {section} | **failed** | {body['error'].splitlines()[-1]} | | |")
    for section, body in results["sections"].items():
        lines += ["", f"## {section}", ""]
        lines += [f"- {note}" for note in body.get("notes", [])]
        for title, rows in body.get("tables", {}).items():
            if rows:
                header = list(rows[0])
                lines += ["", f"{title}:", "", "| " + " | ".join(header) + " |"]
                lines += ["| " + " | ".join("---" for _ in header) + " |"]
                lines += ["| " + " | ".join(_fmt(r.get(h, "")) for h in header) + " |"
                          for r in rows]  # fmt: skip
        raw = {k: v for k, v in body.items() if k not in ("notes", "tables")}
        lines += ["", "<details><summary>raw figures</summary>", "", "```json"]
        lines += [json.dumps(raw, indent=2), "```", "", "</details>"]
    return "\n".join(lines)


@contextlib.contextmanager
def cuda_peak(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak CUDA memory allocated inside the block, in MiB above the allocation at its start."""
    out = {"peak_mib": float("nan")}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    yield out
    torch.cuda.synchronize(device)
    out["peak_mib"] = (torch.cuda.max_memory_allocated(device) - start) / 2**20
