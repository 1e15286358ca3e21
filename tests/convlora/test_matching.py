"""Our numpy Hungarian matching finds scipy's optimal assignments (convlora depends on no scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_assignment

from convlora.matching import linear_sum_assignment

SHAPES = [(1, 1), (1, 5), (5, 1), (3, 3), (4, 7), (7, 4), (10, 10), (12, 30), (30, 12)]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
def test_matches_scipy_on_random_rectangular_costs(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for trial in range(20):
        cost = rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4)
        if trial % 4 == 0:  # ties: few distinct values, as with near-identical mask queries
            cost = rng.integers(0, 3, size=shape).astype(float)
        rows, cols = linear_sum_assignment(cost)
        expected_rows, expected_cols = scipy_assignment(cost)
        assert rows.dtype == cols.dtype == np.int64
        assert len(rows) == min(shape) and len(set(cols.tolist())) == len(cols)
        assert np.array_equal(rows, np.sort(rows))
        assert cost[rows, cols].sum() == pytest.approx(cost[expected_rows, expected_cols].sum())
        if trial % 4:  # unique optimum almost surely: the very same assignment
            assert np.array_equal(rows, expected_rows) and np.array_equal(cols, expected_cols)


def test_empty_and_invalid_costs() -> None:
    rows, cols = linear_sum_assignment(np.zeros((0, 4)))
    assert rows.shape == cols.shape == (0,)
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_sum_assignment(np.array([[0.0, np.inf]]))
