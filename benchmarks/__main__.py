"""Run the benchmark sections and write RESULTS_DIR/latest.{json,md}.

    python -m benchmarks [--quick] [--only SECTION ...] [--results-dir DIR] [--name STEM]

The results folder defaults to benchmarks/results (or $BENCH_RESULTS_DIR); --quick writes
`quick.*` unless --name says otherwise. With --only, the named sections replace theirs in an
existing results file and the others are kept. A section that fails is recorded with its error,
the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import RESULTS, Budget, load_average, machine, machine_line, write_results

SECTIONS = ("adapters", "accel", "predict", "memory", "tiling", "vectorize")


def run_section(name: str, budget: Budget) -> dict[str, Any]:
    """One section's figures, with its wall time and the load average around it."""
    start = time.perf_counter()
    load = load_average()
    try:
        section = importlib.import_module(f"benchmarks.bench_{name}").run(budget)
    except Exception:
        section = {"error": traceback.format_exc()}
    section["section_wall_s"] = round(time.perf_counter() - start, 1)
    section["load_average_before"], section["load_average_after"] = load, load_average()
    section["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="seconds per section (harness check)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(os.environ.get("BENCH_RESULTS_DIR", RESULTS)),
        help="where to write the results (default: benchmarks/results or $BENCH_RESULTS_DIR)",
    )
    parser.add_argument(
        "--name", default=None, help="results file stem (default: latest, or quick for --quick)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        choices=["cpu", "cuda"],
        default=["cpu", "cuda"],
        help="where the adapters section measures (cuda only when a GPU is present)",
    )
    args = parser.parse_args(argv)
    if args.threads:  # here and in the fresh interpreters the memory benchmarks start
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    budget = Budget(quick=args.quick, devices=tuple(args.devices))
    name = args.name or ("quick" if args.quick else "latest")
    mode = "quick" if args.quick else "full"
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": machine(),
        "sections": {},
    }
    existing = args.results_dir / f"{name}.json"
    if set(args.only) != set(SECTIONS) and existing.exists():
        previous = json.loads(existing.read_text())
        if previous.get("mode") == mode:
            results["sections"] = dict(previous["sections"])
    print(f"[bench] {mode} mode on {machine_line(results['machine'])}", flush=True)
    started = time.perf_counter()
    for section in args.only:
        print(f"[bench] {section} ...", flush=True)
        body = run_section(section, budget)
        results["sections"][section] = body
        status = "FAILED" if "error" in body else "done"
        print(f"[bench] {section} {status} in {body['section_wall_s']} s", flush=True)
        if "error" in body:
            print(body["error"], file=sys.stderr, flush=True)
    results["sections"] = {s: results["sections"][s] for s in SECTIONS if s in results["sections"]}
    results["wall_s"] = round(time.perf_counter() - started, 1)
    json_path, md_path = write_results(results, args.results_dir, name)
    print(f"[bench] wrote {json_path} and {md_path} ({results['wall_s']} s)")
    return 1 if any("error" in body for body in results["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
