"""Where tiling spends its time: seconds per stage, summed over the threads that ran it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class StageSeconds(dict[str, float]):
    """Seconds per stage name; `with seconds("read"): ...` adds the block's wall time."""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({stage: time.perf_counter() - start})

    def add(self, other: Mapping[str, float]) -> None:
        """Add another count's seconds, stage by stage."""
        for stage, seconds in other.items():
            self[stage] = self.get(stage, 0.0) + seconds

    def line(self) -> str:
        """`read 1.2 s, write 3.4 s, ...`, most first."""
        ordered = sorted(self.items(), key=lambda item: -item[1])
        return ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in ordered)
