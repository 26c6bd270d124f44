"""The one stop rule of both rankers: decide's (``targeting.ordered``, Python integers, one
request) and the batch scorer's (``targeting.batchrank``, numpy arrays, a block of requests).

Both visit a :class:`targeting.layout.Layout`'s positions from the head of each block (the
whole order is one block for a model without a block layout), a chunk at a time, and
score what they find. The rule, written once here, in forms that work on Python floats
and on arrays alike:

- **floor**: a position whose bound is below the request's ``floor_cpm`` is never visited;
- **k-th best**: a request keeps the ``limit``-th best eCPM it has found (:func:`kth_best`,
  :func:`merge_best`);
- **done**: a block is done for a request once that eCPM is strictly above the bound of
  everything the request has not visited in it (strict: a tie with an unvisited campaign may
  still rank above, by id); it never becomes needed again (the bound only falls, the
  ``limit``-th best only rises). The request is done when no block is needed
  (:func:`needed`);
- **level**: each round visits, in each needed block, the positions whose bound reaches the
  request's :func:`level`, the higher of its ``limit``-th best and its highest bound over
  ``SPREAD``: the highest bounds go first, which raises the ``limit``-th best soonest;
- **step**: a block's chunk starts at the driver's first size (a cost of its representation:
  a Python integer's shift vs a numpy gather) and grows ``GROWTH``-fold at each visit.

With the prior model a position's eCPM is known in advance and position order is rank
order; then the ``limit``-th campaign found is the ``limit``-th best, and :func:`done` holds
at once for everything after it (``targeting.ordered``'s and ``targeting.batchrank``'s
in-order walks are this rule with that shortcut).
"""

from __future__ import annotations

from typing import TypeVar, cast

import numpy as np

# Decide's values before the two drivers shared them; the batch scorer's own (1.2, x2) ran a
# learned model at 10k campaigns at 29k requests/s against 45k with these (same run).
SPREAD = 2.0  # a round goes down to the request's highest bound over this (or its limit-th best)
GROWTH = 4  # a block's next chunk is this many times its last

F = TypeVar("F", float, np.ndarray)


def needed(bound: F, kth: F, floor: float) -> F:
    """Whether a block whose bound for the request is ``bound`` is still needed: the bound
    reaches the floor and the request's ``limit``-th best (``kth``) is not strictly above it."""
    return cast(F, (bound >= floor) & (kth <= bound))


def done(kth: F, bound: F) -> F:
    """Whether nothing at or after a position of bound ``bound`` can enter the answer of a
    request whose ``limit``-th best eCPM is ``kth`` (strict: ties rank by id)."""
    return cast(F, kth > bound)


def level(kth: F, top: F) -> F:
    """The bound down to which a round visits: the higher of the ``limit``-th best and the
    highest needed bound ``top`` over ``SPREAD``."""
    return cast(F, np.maximum(kth, top / SPREAD))


def kth_best(values: np.ndarray, limit: int) -> float:
    """The ``limit``-th largest of ``values`` (float64[]), ``-inf`` with fewer."""
    if values.size < limit:
        return -np.inf
    return float(-np.partition(-values, limit - 1)[limit - 1])


def merge_best(best: np.ndarray, active: np.ndarray, req: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`kth_best` for a block of requests, found a chunk at a time: merge ``values`` (of
    requests ``req``, by request; all in ``active``) into ``best`` (float64[B, limit], each
    request's best values in no order, ``-inf`` for none); returns float64[len(active)], the
    ``limit``-th best of each active request (``-inf`` with fewer)."""
    limit = best.shape[1]
    rows = best[active]
    if req.size:
        slot = np.empty(int(active[-1]) + 1, dtype=np.int64)  # request -> its row
        slot[active] = np.arange(active.size)
        r = slot[req]
        count = np.bincount(r, minlength=active.size)
        grid = np.full((active.size, limit + int(count.max())), np.inf)  # negated: partition takes the smallest
        grid[:, :limit] = -rows
        grid[r, limit + np.arange(r.size) - (np.cumsum(count) - count)[r]] = -values
        rows = -np.partition(grid, limit - 1, axis=1)[:, :limit]
        best[active] = rows
    return cast(np.ndarray, rows.min(axis=1))


__all__ = ["GROWTH", "SPREAD", "done", "kth_best", "level", "merge_best", "needed"]
