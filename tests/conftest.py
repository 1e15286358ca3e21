"""Suite-wide settings: share the CPU cores among pytest-xdist workers instead of oversubscribing.

Each worker (and every process it starts) gets cores // workers torch and OpenMP threads: two
workers with two threads each on a 2-core machine made CPU-bound tests several times slower.
"""

from __future__ import annotations

import os

import torch

import flows  # noqa: F401  (Prefect's temporary-server defaults, before Prefect reads its settings)


def pytest_configure() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
