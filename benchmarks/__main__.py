"""Run the benchmark sections and write benchmarks/results/latest.{json,md}."""

from __future__ import annotations

import argparse
import importlib
import time
from datetime import UTC, datetime

from benchmarks.harness import Budget, machine, write_results

SECTIONS = ("adapters", "predict", "memory", "tiling", "vectorize")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="seconds per section (harness check)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--name", default=None, help="results file stem (default: latest, or quick for --quick)"
    )
    args = parser.parse_args()
    budget = Budget(quick=args.quick)
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "sections": {},
    }
    for name in args.only:
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        section = importlib.import_module(f"benchmarks.bench_{name}").run(budget)
        section["section_wall_s"] = round(time.perf_counter() - start, 1)
        results["sections"][name] = section
        print(f"[bench] {name} done in {section['section_wall_s']} s", flush=True)
    name = args.name or ("quick" if args.quick else "latest")
    json_path, md_path = write_results(results, name)
    print(f"[bench] wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
