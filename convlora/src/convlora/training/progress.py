"""Training progress for people: a bar on a terminal, periodic INFO lines everywhere else.

The lines (step, loss, lr, images/s, ETA) are what an orchestrator's log view shows while a long
run trains; on an interactive terminal a tqdm bar is drawn too, when tqdm is installed.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

logger = logging.getLogger("convlora.training")

try:  # optional: the model core depends on torch, segment-anything, safetensors, numpy only
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - exercised in the standalone-install test
    _tqdm = None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class TrainingProgress:
    """Reports each optimiser step: `update(loss, lr, images_per_second)`.

    Lines go to the `convlora.training` logger at INFO every `every_seconds` (and for the first
    and last step); `bar` draws a progress bar as well when stderr is a terminal.
    """

    def __init__(
        self, total: int, initial: int, *, enabled: bool = True, every_seconds: float = 30.0
    ) -> None:
        self.total, self.step, self.enabled = total, initial, enabled
        self.every = every_seconds
        self.started = time.monotonic()
        self.first_step = initial
        self.last_line = -float("inf")
        use_bar = enabled and _tqdm is not None and sys.stderr.isatty()
        self.bar: Any = (
            _tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
            if use_bar
            else None
        )

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, loss: float, lr: float, images_per_second: float) -> None:
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_second:.1f}"
            )
        now = time.monotonic()
        due = now - self.last_line >= self.every
        if self.enabled and (due or self.step in (self.first_step + 1, self.total)):
            self.last_line = now
            done = self.step - self.first_step
            rate = done / max(now - self.started, 1e-9)
            eta = (self.total - self.step) / rate if rate > 0 else 0.0
            logger.info(
                "step %d/%d  loss %.4f  lr %.2e  %.1f img/s  ETA %s",
                self.step, self.total, loss, lr, images_per_second, _duration(eta),
            )  # fmt: skip
