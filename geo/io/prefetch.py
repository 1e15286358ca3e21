"""Run a loader a few items ahead in a background thread, so reading overlaps with the model."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(
    load: Callable[[T], R],
    items: Iterable[T],
    depth: int = 2,
    finish: Callable[[], object] | None = None,
) -> Generator[R, None, None]:
    """Yield `load(item)` for each item in order, with up to `depth` loads running ahead.

    One worker thread does all the loading and then calls `finish`, so a loader may keep an open
    dataset (and its thread-local GDAL environment) in that thread. Errors surface when their
    item is reached; leaving early cancels the loads not started yet.
    """
    pending: deque[Future[R]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        try:
            for item in source:
                pending.append(pool.submit(load, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            if finish is not None:
                pool.submit(finish).result()
