"""Peak memory of work run in a fresh interpreter (for memory-bound tests and benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from tests.support.paths import ROOT

# The child's own high-water mark. Not getrusage's ru_maxrss: Python starts children with vfork,
# and Linux folds the parent's peak into the child's ru_maxrss at exec, so a child of a big
# process (a pytest worker, the benchmark runner) would report the parent's peak.
PEAK_SUFFIX = """
import json, os, resource
_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if os.path.exists("/proc/self/status"):
    _kib = int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM:")).split()[1])
print(json.dumps({"__peak_kib": _kib}))
"""


def peak_rss_of(code: str, args: list[str] | None = None, timeout: int = 1800) -> dict[str, Any]:
    """Run Python `code` in a fresh interpreter (in the repository root); its peak RSS in MiB
    and wall seconds. The code may print one JSON object on its last line; it is returned under
    "result"."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + PEAK_SUFFIX, *(args or [])],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rss = lines[-1]["__peak_kib"] / 1024
    result = lines[-2] if len(lines) > 1 else None
    return {"peak_rss_mib": rss, "wall_s": time.perf_counter() - start, "result": result}
