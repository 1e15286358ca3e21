"""Progress of long work: a tqdm bar on a terminal, periodic log lines everywhere else
(Prefect's UI, CI logs, a file), so a run never looks stuck and never floods its log."""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from types import TracebackType

from tqdm.auto import tqdm

log = logging.getLogger("geo.progress")
EVERY_SECONDS = 30.0


class Progress:
    """`with Progress(total, "tiling", "tile") as p: p.update(n)`; `initial`: how much of
    `total` an earlier, interrupted run did (counted as done; the rate is this run's)."""

    def __init__(
        self, total: int, desc: str, unit: str, *, enabled: bool = True, initial: int = 0
    ) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.done = self.initial = initial
        self.started = self.last = time.monotonic()
        # a bar in the main process only: several scenes' bars in worker processes (a local
        # Dask cluster's, which share the terminal) would draw over one another; they log lines
        interactive = enabled and sys.stderr.isatty() and multiprocessing.parent_process() is None
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial) if interactive else None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and kind is None and self.total:
            self._line()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self.last >= EVERY_SECONDS and self.done < self.total:
            self.last = now
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        log.info(
            "%s: %d/%d %ss (%.1f %s/s)",
            self.desc,
            self.done,
            self.total,
            self.unit,
            rate,
            self.unit,
        )
