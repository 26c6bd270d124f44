"""Upper bounds of eCPM, for the rankers that stop early (``batchrank``, ``ordered``).

Both rankers visit clauses in a fixed order and finish a request once its
``limit``-th best eCPM is strictly above a bound of everything it has not
visited. How early that happens depends on the bound and the order:

* the **global** bound (:func:`ecpm_bound`) holds for every request: the bid for
  CPM, ``bid × 1000 × max_pctr`` for CPC. The clauses are visited by it,
  highest first. Exact for the prior model; for a learned model ``max_pctr``
  puts every feature at its best and every positive tag present, far above
  what one request can give, and a ranker bounded by it visits nearly
  everything.
* **blocks** (:class:`Blocks`), for a :class:`targeting.scoring.SplitModel`: the
  logit of P(click) splits into a campaign part ``x_c`` and a request part
  ``a·u[k]`` for the campaign's category ``k``, and ``σ(y) ≤ e^y``, so a CPC
  campaign's eCPM for a request is at most
  ``min(1000·bid, exp(log(1000·bid) + x_c + a·u[k]))``. The clauses are laid
  out in blocks: the CPM campaigns by bid, then per category its CPC
  campaigns by ``log(1000·bid) + x_c``, each descending. Within a block the
  request part is one number, so the first unvisited position of a block
  bounds all the rest of it, for that request, in O(1). A ranker walks each
  block from its head and leaves it as soon as its bound falls below the
  request's ``limit``-th best (Fagin's threshold algorithm, one sorted list
  per block). With CTRs of a few percent ``e^y`` is within a few percent of
  ``σ(y)``, so a request scores about the campaigns that could make its
  answer, not the thousand it is eligible for. (Decide and the batch
  scorer walk an index of at most ``BLOCKS_FROM`` clauses in one order instead:
  at 300 campaigns one match over its few words beats a round per block.)

Bounds are inflated slightly so that rounding never makes them too low.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .compiler import CampaignIndex
from .scoring import BoundedModel, ClickModel, SplitModel

BLOCKS_FROM = 512  # clauses: a smaller index is walked in one order (a few words: one match beats a round per block)
INFLATE = 1 + 1e-9
NUDGE = 1e-12
_CLIP = 1e4  # |log| of bounds beyond this are all alike to Blocks.below
_SPAN = 4 * _CLIP  # Blocks.below's offset between blocks


def ecpm_bound(index: CampaignIndex, model: ClickModel) -> np.ndarray:
    """float64[n_campaigns]: no request can give a campaign a higher eCPM than this.

    CPM: the bid. CPC: ``bid × 1000 ×`` the model's largest possible pCTR
    (``model.max_pctr(index)`` for a :class:`~targeting.scoring.BoundedModel`, else 1)."""
    if isinstance(model, BoundedModel):
        pmax = np.asarray(model.max_pctr(index), dtype=np.float64)
    else:
        pmax = np.ones(index.n_campaigns)
    bound = np.where(index.is_cpc, index.bid * np.minimum(pmax, 1.0) * 1000.0, index.bid)
    return bound * INFLATE + NUDGE


@dataclass(frozen=True, eq=False)
class Blocks:
    """The block layout of one index and model (module docstring), over positions ``0..m``.

    Block ``j`` holds positions ``start[j]:start[j + 1]``; ``scale_of[j]`` is the
    column of :meth:`scales` its request part is read from (the last, always 0,
    for the CPM block). Position ``m`` is a sentinel that bounds nothing."""

    a: float  # the model's calibration slope: a request's part of the logit is a·u
    start: np.ndarray  # int64[J + 1]
    scale_of: np.ndarray  # int64[J]
    key: np.ndarray  # float64[m + 1]: log(1000·bid) + x_c (CPC) or log(bid) (CPM); descending in a block
    cap: np.ndarray  # float64[m + 1]: the largest 1000·bid (CPC) or bid (CPM) from here to the block's end

    @property
    def n_blocks(self) -> int:
        return self.scale_of.size

    def scales(self, users: np.ndarray) -> np.ndarray:
        """float64[..., K + 1]: the request parts ``a·u`` of user logits ``users`` (float64[..., K]),
        and a 0 for the CPM block."""
        pad = np.zeros((*users.shape[:-1], 1))
        return np.concatenate([self.a * users, pad], axis=-1)

    def bounds(self, at: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """float64[B, J]: for each request (``scales``: float64[B, K + 1]) and block ``j``, a bound of
        the eCPM of every position of the block from ``at[j]`` on (``-inf`` when ``at[j]`` is its end)."""
        return self.bound_at(at, np.arange(self.n_blocks), scales[:, self.scale_of])

    def bound_at(self, at: np.ndarray, j: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """float64[V]: the bound of single positions: ``at[i]`` of block ``j[i]`` (its end gives
        ``-inf``) for a request whose part there is ``scale[i]`` (any shapes that broadcast)."""
        at = np.where(at < self.start[j + 1], at, self.key.size - 1)
        with np.errstate(over="ignore"):
            b = np.minimum(self.cap[at], np.exp(self.key[at] + scale))
        return b * INFLATE + NUDGE

    def bound_one(self, i: int, scale: float) -> float:
        """:meth:`bounds` of one position ``i`` (``m`` past a block's end) of a block whose request
        part is ``scale``, in plain Python (decide's path)."""
        key, cap = self._lists
        return min(cap[i], math.exp(min(key[i] + scale, 700.0))) * INFLATE + NUDGE

    def below_one(self, i: int, hi: int, log_level: float, scale: float) -> int:
        """:meth:`below` in plain Python, searching positions ``i..hi`` of one block (decide's path)."""
        by_key, by_cap = self._neg_lists
        return min(bisect_right(by_key, scale - log_level, i, hi), bisect_right(by_cap, -log_level, i, hi))

    @cached_property
    def _lists(self) -> tuple[list[float], list[float]]:
        return self.key.tolist(), self.cap.tolist()

    @cached_property
    def _neg_lists(self) -> tuple[list[float], list[float]]:
        """``-key`` and ``-log(cap)`` as lists: ascending within each block."""
        m = self.key.size - 1
        with np.errstate(divide="ignore"):
            return (-self.key[:m]).tolist(), (-np.log(self.cap[:m])).tolist()

    def below(self, j: np.ndarray, log_t: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """int64[V]: the first position of block ``j[i]`` where the bound for a request whose part
        there is ``scale[i]`` falls below ``exp(log_t[i])`` (the block's end when it never does),
        leaving out the bounds' inflation: it only sizes a visit, which need not be exact."""
        by_key, by_cap = self._search
        off = j * _SPAN
        a = np.searchsorted(by_key, off - np.clip(log_t - scale, -_CLIP, _CLIP), side="right")
        b = np.searchsorted(by_cap, off - np.clip(log_t, -_CLIP, _CLIP), side="right")
        return np.minimum(a, b)

    @cached_property
    def _search(self) -> tuple[np.ndarray, np.ndarray]:
        """(float64[m], float64[m]): ``-key`` and ``-log(cap)`` clipped, plus ``_SPAN`` per block:
        ascending over all positions, so one ``searchsorted`` finds a prefix in any block."""
        m = self.key.size - 1
        off = np.repeat(np.arange(self.n_blocks) * _SPAN, np.diff(self.start))
        with np.errstate(divide="ignore"):
            log_cap = np.log(self.cap[:m])
        return off - np.clip(self.key[:m], -_CLIP, _CLIP), off - np.clip(log_cap, -_CLIP, _CLIP)


def block_order(index: CampaignIndex, model: SplitModel) -> np.ndarray:
    """float64[n_campaigns]: a visit order (descending) that lays the campaigns out in blocks."""
    group, key = _group_and_key(index, model)
    rank = np.empty(index.n_campaigns, dtype=np.float64)
    rank[np.lexsort((np.arange(index.n_campaigns), -key, group))] = np.arange(index.n_campaigns)
    return -rank


def _group_and_key(index: CampaignIndex, model: SplitModel) -> tuple[np.ndarray, np.ndarray]:
    """(int64[n]: block of each campaign, 0 CPM then 1 + category; float64[n]: its key)."""
    cpc = index.is_cpc
    group = np.where(cpc, 1 + index.category.astype(np.int64), 0)
    with np.errstate(divide="ignore"):
        key = np.where(cpc, np.log(1000.0 * index.bid) + model.campaign_logits(index), np.log(index.bid))
    return group, key


def blocks(index: CampaignIndex, model: SplitModel, owner: np.ndarray) -> Blocks:
    """The :class:`Blocks` of positions whose campaigns are ``owner`` (int[m], laid out by
    :func:`block_order`)."""
    owner = owner.astype(np.int64)
    m = owner.size
    group, key = _group_and_key(index, model)
    k = int(model.n_categories)
    g = group[owner]
    start = np.searchsorted(g, np.arange(k + 2)).astype(np.int64)
    cap_c = np.where(index.is_cpc, 1000.0 * index.bid, index.bid)[owner]
    cap = np.full(m + 1, -np.inf)
    for j in range(k + 1):  # the largest from each position to the end of its block
        lo, hi = start[j], start[j + 1]
        cap[lo:hi] = np.maximum.accumulate(cap_c[lo:hi][::-1])[::-1]
    return Blocks(
        a=float(model.a), start=start, scale_of=np.r_[k, np.arange(k)].astype(np.int64),
        key=np.append(key[owner], -np.inf), cap=cap,
    )


__all__ = ["BLOCKS_FROM", "INFLATE", "NUDGE", "Blocks", "block_order", "blocks", "ecpm_bound"]
