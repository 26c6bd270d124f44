"""Pieces of the vectorized pipeline against their plain forms."""

from __future__ import annotations

import numpy as np
import pytest

from targeting.batchmatch import _day_groups


@pytest.mark.parametrize("zones", [1, 2, 5, 12, 14], ids=lambda z: f"{z}_zones")  # 14: the fallback path
def test_day_groups_equal_unique_rows(zones: int) -> None:
    rng = np.random.default_rng(zones)
    base = rng.integers(739_000, 739_010, 5000)
    # an instant's local dates differ by up to two days between zones (UTC-12 .. UTC+14)
    days = (base[:, None] + rng.integers(-2, 3, (5000, zones))).astype(np.int32)
    days[:, 0] = base
    uniq, inv = _day_groups(days)
    want, want_inv = np.unique(days, axis=0, return_inverse=True)
    assert np.array_equal(uniq[inv], days)  # every row maps back to itself
    assert len(uniq) == len(want) and len({tuple(r) for r in uniq.tolist()}) == len(uniq)
    assert np.array_equal(want[want_inv.reshape(-1)], uniq[inv])
