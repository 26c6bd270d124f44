"""Pieces of the batch store checks against their plain forms."""

from __future__ import annotations

import numpy as np
import pytest

from targeting.storecheck import _unique


@pytest.mark.parametrize(("size", "span"), [(0, 1), (1, 1), (50, 3), (5000, 200), (300, 10**9)])  # last: the sort
def test_unique_equals_numpy(size: int, span: int) -> None:
    code = np.random.default_rng(size).integers(-span, span, size) * 7 + 10**12
    uniq, inv = _unique(code)
    want, want_inv = np.unique(code, return_inverse=True)
    assert np.array_equal(uniq, want) and np.array_equal(inv, want_inv.reshape(-1))
