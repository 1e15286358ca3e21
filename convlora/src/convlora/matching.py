"""Minimum-cost bipartite matching (the Hungarian method), for the Mask2Former set loss."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def linear_sum_assignment(
    cost: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(rows, columns) of a minimum-cost assignment of a rectangular cost matrix.

    Every row is matched when there are no more rows than columns, every column otherwise;
    rows come back sorted, as in `scipy.optimize.linear_sum_assignment`. This is the O(n² m)
    shortest-augmenting-path method with potentials (Kuhn-Munkres; Jonker-Volgenant style).
    """
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("cost holds NaN or infinite values")
    transposed = matrix.shape[0] > matrix.shape[1]
    if transposed:
        matrix = matrix.T
    n, m = matrix.shape
    # 1-based helper arrays: column j is matched to row owner[j] (0 = free).
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0] = row
        free = 0
        dist = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[free] = True
            r = owner[free]
            reduced = matrix[r - 1] - u[r] - v[1:]
            better = ~used[1:] & (reduced < dist[1:])
            dist[1:][better] = reduced[better]
            way[1:][better] = free
            candidates = np.where(used[1:], np.inf, dist[1:])
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            u[owner[used]] += delta
            v[used] -= delta
            dist[~used] -= delta
            free = nxt
            if owner[free] == 0:
                break
        while free:
            prev = way[free]
            owner[free] = owner[prev]
            free = prev
    cols = np.flatnonzero(owner[1:]).astype(np.int64)
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)
