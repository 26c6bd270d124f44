"""One ranking layout per (index, model): the clause bitsets in the order both rankers visit.

A :class:`Layout` is built once per rule set and model, by whoever serves them (the
engine's snapshot, a batch job) and dropped with them. It holds

- the clause rows permuted into the model's visit order (``perm``: position → clause,
  ``owner``: position → campaign; a campaign's clauses are adjacent), with a zero row
  appended as the target of padding;
- the bounds: ``ub[i]`` bounds the eCPM of every position from ``i`` on, ``ub_at[w]`` the
  same from word ``w`` on, and for a :class:`~targeting.scoring.SplitModel` the block
  layout (:class:`~targeting.bounds.Blocks`, per-request bounds);
- run starts and ends (each campaign's first position and clause count, each position's
  campaign end), the ``all``/``none`` tag masks per position;
- ``exact``: the prior model, whose eCPM per position is known up front and whose position
  order is rank order;
- every cache derived from it (live sets per local date), under the one eviction policy
  of :class:`BoundedCache`.

:meth:`Layout.identity` is the same in index order (eligibility, not ranking: the click-log
generator and the eligibility tests use it).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from . import bitset
from .bounds import Blocks, block_order, blocks, ecpm_bound
from .compiler import CampaignIndex
from .scoring import ClickModel, PriorModel, SplitModel, ecpm

CACHE_BYTES = 64 << 20  # per cache of derived rows (live sets, tag combinations, blocked campaigns)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """What a layout derives per request pattern, kept while it is used: past ``max_bytes``
    (every entry counted as ``entry_bytes``) the oldest entry goes, one at a time (dropping
    thousands of big integers at once is a pause of milliseconds inside some decision).
    Reads take no lock (a dict read is atomic); writers do."""

    def __init__(self, entry_bytes: int, max_bytes: int = CACHE_BYTES) -> None:
        self._data: dict[K, V] = {}
        self._room = max(16, max_bytes // max(entry_bytes, 1))
        self._lock = threading.Lock()
        self.get = self._data.get  # the hot path's read: no Python frame of our own

    def put(self, key: K, value: V) -> V:
        with self._lock:
            if len(self._data) >= self._room:
                del self._data[next(iter(self._data))]
            self._data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, eq=False)
class Layout:
    """See the module docstring. ``m`` clauses, ``n`` campaigns, ``W`` words."""

    index: CampaignIndex
    model: ClickModel | None  # None: the identity layout (eligibility only)
    perm: np.ndarray  # int64[m]: clause at each position
    owner: np.ndarray  # int64[m]: campaign at each position
    rows: np.ndarray  # uint64[n_rows + 1, W]: the index's rows in this order; the last is zeros
    neg_words: np.ndarray  # int64[]: the words where ``all``/``none`` rows have bits
    ub: np.ndarray  # float64[m + 1]: bound of every position from i on (-inf at m)
    ub_at: np.ndarray  # float64[W + 1]: the same from word w on
    split: SplitModel | None  # the model, when it splits its logit
    blocks: Blocks | None  # the split model's block layout of this order (targeting.bounds)
    exact: bool  # the prior model: position order is rank order
    value: np.ndarray  # float64[n]: each campaign's eCPM when ``exact`` (else empty)
    run_start: np.ndarray  # int64[n]: each campaign's first position
    run_count: np.ndarray  # int64[n]: its number of positions (clauses)
    run_end: np.ndarray  # int64[m]: the position after the last clause of this position's campaign
    # (uint64[m, L] the tags each position's clause needs all of, uint64[m, L] the tags it must
    # not have), tag t at bit t % 64 of column t // 64: the all/none rules per clause
    tag_masks: tuple[np.ndarray, np.ndarray]
    _live: BoundedCache[tuple[int, ...], np.ndarray] = field(repr=False)

    @property
    def m(self) -> int:
        return int(self.perm.size)

    @classmethod
    def of(cls, index: CampaignIndex, model: ClickModel) -> Layout:
        """``model``'s visit order: by block, then the block key (a :class:`SplitModel`), else
        by the global eCPM bound (``targeting.bounds``), highest first, ties by campaign."""
        bound = ecpm_bound(index, model)
        split = model if isinstance(model, SplitModel) else None
        order = bound if split is None else block_order(index, split)
        value = ecpm(index, np.arange(index.n_campaigns), index.prior_ctr) if isinstance(model, PriorModel) else None
        return cls._build(index, model, order, bound, split, value)

    @classmethod
    def identity(cls, index: CampaignIndex) -> Layout:
        """The index's own order (eligibility; no bounds)."""
        return cls._build(index, None, None, None, None, None)

    @classmethod
    def _build(cls, index: CampaignIndex, model: ClickModel | None, order: np.ndarray | None,
               bound: np.ndarray | None, split: SplitModel | None, value: np.ndarray | None) -> Layout:
        """``value``: each campaign's eCPM when it does not depend on the request (the prior)."""
        m, n = index.n_clauses, index.n_campaigns
        if order is None or bound is None:
            perm = np.arange(m, dtype=np.int64)
            rows = index.rows
            ub = np.full(m, np.inf)
        else:
            rank = np.empty(n, dtype=np.int64)
            rank[np.lexsort((np.arange(n), -order))] = np.arange(n)
            perm = np.argsort(rank[index.owner], kind="stable").astype(np.int64)
            rows = _permute_bits(index.rows, perm) if m else index.rows
            ub = np.maximum.accumulate(bound[index.owner[perm]][::-1])[::-1]  # of every position from here on
        rows = np.vstack([rows, np.zeros((1, index.n_words), dtype=np.uint64)])
        rows.setflags(write=False)
        neg = rows[index.all_base:-1]
        neg_words = np.flatnonzero(np.bitwise_or.reduce(neg, axis=0)) if neg.size else np.zeros(0, np.int64)
        ub = np.append(ub, -np.inf)
        owner = index.owner[perm].astype(np.int64)
        count = np.bincount(owner, minlength=n).astype(np.int64)
        start = np.zeros(n, dtype=np.int64)
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if m else owner
        start[owner[first]] = first
        # with known eCPMs, position order is rank order unless the inflated bound tied two
        # different eCPMs (then they are ranked per request like any model's)
        exact = value is not None and not np.any(np.diff(value[owner]) > 0)
        return cls(
            index=index, model=model, perm=perm, owner=owner, rows=rows, neg_words=neg_words, ub=ub,
            ub_at=ub[np.minimum(np.arange(index.n_words + 1) * 64, m)], split=split,
            blocks=None if split is None else blocks(index, split, owner), exact=exact,
            value=value if exact and value is not None else np.zeros(0),
            run_start=start, run_count=count, run_end=(start + count)[owner],
            tag_masks=_tag_masks(index, rows, m), _live=BoundedCache(index.n_words * 8 + 64),
        )

    def live(self, days: tuple[int, ...]) -> np.ndarray:
        """uint64[W]: the positions whose campaign is live (:meth:`CampaignIndex.live`) on the
        local dates ``days`` (one per zone of the index)."""
        hit = self._live.get(days)
        if hit is None:
            hit = self._live.put(days, bitset.pack(self.index.live(days)[self.owner]) if self.m
                                 else np.zeros(1, dtype=np.uint64))
        return hit


def _tag_masks(index: CampaignIndex, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """:attr:`Layout.tag_masks` from the layout's ``rows``."""
    n_tags = len(index.tag_index)
    width = max(1, -(-n_tags // 64))
    need, avoid = np.zeros((m, width), dtype=np.uint64), np.zeros((m, width), dtype=np.uint64)
    for out, base in ((need, index.all_base), (avoid, index.none_base)):
        for t in range(n_tags):
            on = bitset.byte_bits(rows[base + t].view(np.uint8))
            out[on[on < m], t // 64] |= np.uint64(1 << (t % 64))
    return need, avoid


def _permute_bits(rows: np.ndarray, perm: np.ndarray, chunk: int = 128) -> np.ndarray:
    """uint64[R, W]: bit ``i`` of each row is bit ``perm[i]`` of ``rows`` (uint64[R, W]); bits
    past ``perm`` are 0. ``chunk`` rows at a time through one reused buffer: the whole index
    unpacked is a byte per bit (21 MB at 10k campaigns), and faulting that in cost more than
    the permutation."""
    out = np.empty_like(rows)
    dense = np.zeros((chunk, rows.shape[1] * 64), dtype=np.uint8)
    for lo in range(0, rows.shape[0], chunk):
        part = np.unpackbits(rows[lo:lo + chunk].view(np.uint8), axis=1, bitorder="little")
        n = part.shape[0]
        np.take(part, perm, axis=1, out=dense[:n, :perm.size])
        out[lo:lo + n] = np.packbits(dense[:n], axis=1, bitorder="little").view(np.uint64)
    return out


__all__ = ["CACHE_BYTES", "BoundedCache", "Layout"]
