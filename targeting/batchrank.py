"""Ranking a block of ``B`` requests at once: the batch scorer's driver of the stop rule.

Same answers as ``Engine.decide`` (a test checks it). The requests walk a
:class:`targeting.layout.Layout` a chunk at a time and stop by
:mod:`targeting.stoprule`, in numpy arrays (decide's driver, ``targeting.ordered``, runs
the same rule in Python integers for one request):

- :func:`_decide_in_order`: the prior model, whose position order is rank order;
- :func:`_decide_pruned`: a model without blocks (or an index of at most ``blocks_from``
  clauses), one block of request-independent bounds (``Layout.ub_at``);
- :func:`_decide_blocks`: a :class:`~targeting.scoring.SplitModel`'s blocks, per-request
  bounds (Fagin's threshold algorithm, ``targeting.bounds``).

Matching is :mod:`targeting.batchmatch`, store-backed checks (retargeting, frequency caps,
budgets, one read of the state per step) :mod:`targeting.storecheck`, on the visited
candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from . import bitset, stoprule
from .batchmatch import (
    PairMatcher,
    campaign_pairs,
    day_groups,
    match_words,
    request_tag_masks,
    tag_checks,
)
from .batchrequests import Clocks, Requests, clocks
from .bounds import BLOCKS_FROM
from .compiler import CampaignIndex
from .layout import Layout
from .request import DEFAULT_LIMIT
from .scoring import PriorModel, ecpm
from .storecheck import store_checks
from .stores.base import StateStore
from .stores.snapshot import StateSnapshot
from .taxonomy import Taxonomy


def decide_requests(
    layout: Layout, tx: Taxonomy, store: StateStore | None, reqs: Requests,
    *, limit: int = DEFAULT_LIMIT, floor_cpm: float = 0.0, group: int = 4096, first_words: int = 2,
    first_chunk: int = 32, blocks_from: int = BLOCKS_FROM,
) -> tuple[Ranked, np.ndarray]:
    """Decide every request of ``reqs`` with ``layout``'s model: (decisions, bool[B] degraded).

    A request is finished once its ``limit``-th best eCPM is above a bound of everything it
    has not yet visited (:mod:`targeting.stoprule`), so most requests never touch most
    campaigns. The answer is exactly the exhaustive one (ties included: the stop test is
    strict). Store checks run on the visited candidates only, one state read per step. The
    first step covers ``first_words`` words of clauses; with a block layout (an index of more
    than ``blocks_from`` clauses), ``first_chunk`` positions of each block."""
    index = layout.index
    use_blocks = layout.blocks is not None and index.n_clauses > blocks_from
    parts: list[Ranked] = []
    degraded = np.zeros(len(reqs), dtype=bool)
    clk_all = clocks(index.zones, reqs.ts)
    # each request's user in a snapshot's state, looked up for all requests at once
    state_rows = store.positions(reqs.user_id) if isinstance(store, StateSnapshot) else None
    for s in range(0, len(reqs), group):  # ``group`` requests walk together
        sel = slice(s, s + group)
        sub = reqs.take(sel)
        clk = Clocks(clk_all.slots[sel], clk_all.days[sel], clk_all.day_fraction[sel])
        rows = None if state_rows is None else state_rows[sel]
        if layout.exact:
            r, deg = _decide_in_order(layout, store, sub, clk, limit, floor_cpm, first_words, rows)
        elif not use_blocks:
            r, deg = _decide_pruned(layout, tx, store, sub, clk, limit, floor_cpm, first_words, rows)
        else:
            r, deg = _decide_blocks(layout, store, sub, clk, limit, floor_cpm, first_chunk, rows)
        degraded[sel] = deg
        r.req = r.req + s
        parts.append(r)
    if not parts:
        return _NO_DECISIONS, degraded
    return Ranked(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                    ("req", "rank", "camp", "ecpm", "pctr"))), degraded


def pair_pctr(layout: Layout, tx: Taxonomy, reqs: Requests, req: np.ndarray, camp: np.ndarray) -> np.ndarray:
    """float64[P]: P(click) of each (request ``req[k]``, campaign ``camp[k]``) pair, as the
    layout's model's ``predict`` gives it."""
    model, index = layout.model, layout.index
    if camp.size == 0:
        return np.zeros(0)
    if isinstance(model, PriorModel) or model is None:
        return cast(np.ndarray, index.prior_ctr[camp])
    if layout.split is not None:
        return layout.split.predict_user_pairs(layout.split.user_logits(reqs), req, camp, index)
    # any other model: one call per request (correct, not fast)
    out = np.empty(camp.size)
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])
    ends = np.r_[starts[1:], req.size]
    for s, e in zip(starts.tolist(), ends.tolist()):
        out[s:e] = model.predict(reqs.request(int(req[s]), tx), camp[s:e], index)
    return out


@dataclass
class Ranked:
    """Decisions of a block, sorted by request then rank: arrays of length ``D``."""

    req: np.ndarray  # int64: request position in the block
    rank: np.ndarray  # int16: 1-based
    camp: np.ndarray  # int64: campaign position
    ecpm: np.ndarray  # float64
    pctr: np.ndarray  # float64


Found = tuple[np.ndarray, ...]  # (request, campaign, pCTR, eCPM) pairs
_NONE_FOUND: Found = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
_NO_DECISIONS = Ranked(_NONE_FOUND[0], np.zeros(0, dtype=np.int16), _NONE_FOUND[1], _NONE_FOUND[2], _NONE_FOUND[3])


def _rank_order(req: np.ndarray, values: np.ndarray, camp: np.ndarray) -> np.ndarray:
    """int64[P]: the order by request, then value descending, then campaign (one pair per
    campaign and request), as ``np.lexsort((camp, -values, req))``. One default (unstable)
    sort on a unique integer key: numpy's stable sorts and lexsort run several times slower."""
    if req.size == 0:
        return np.zeros(0, dtype=np.int64)
    by_value = np.argsort(-values)
    ordered = values[by_value]
    level = np.empty(req.size, dtype=np.int64)  # 0 for the highest value, equal values equal
    level[by_value] = np.cumsum(np.r_[False, ordered[1:] != ordered[:-1]])
    n_levels, n_camp = int(level.max()) + 1, int(camp.max()) + 1
    if (int(req.max()) + 1) * n_levels * n_camp >= 2**63:
        return np.lexsort((camp, -values, req))
    return cast(np.ndarray, np.argsort((req * n_levels + level) * n_camp + camp))


def _decide_in_order(
    layout: Layout, store: StateStore | None, reqs: Requests, clk: Clocks, limit: int, floor_cpm: float,
    first_words: int, state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """:func:`_decide_pruned` for a model whose eCPM depends on the campaign only (priors).

    The layout is ordered by ``layout.value`` (descending, ties by campaign position:
    the rank order itself), so a request's candidates come out of the matched
    bits already ranked: each step appends them after the ones found before
    and a request is done at its ``limit``-th campaign (or at the first below
    the floor). No pool, no partition, no sort by value."""
    index, value = layout.index, layout.value
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    found = np.zeros(n_req, dtype=np.int64)  # decisions so far
    last = np.full(n_req, -1, dtype=np.int64)  # the last campaign found (its clauses may straddle two steps)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    active = np.arange(n_req)
    day_uniq, day_inv = day_groups(clk.days)
    have = request_tag_masks(reqs, len(index.tag_index))
    w, step = 0, first_words
    while active.size and w < index.n_words and layout.ub_at[w] >= floor_cpm:  # the floor
        w1 = min(index.n_words, w + step)
        every = active.size == n_req  # the first step: no copy
        sub = reqs if every else reqs.take(active)
        sub_clk = clk if every else Clocks(clk.slots[active], clk.days[active], clk.day_fraction[active])
        words = match_words(layout, sub, sub_clk, slice(w, w1), (day_uniq, day_inv[active]))
        rb, bit = bitset.bit_pairs(words)  # by request, then position: rank order
        ok = tag_checks(layout, have[active[rb]], w * 64 + bit)
        rb, bit = rb[ok], bit[ok]
        clause = layout.perm[w * 64 + bit]
        if store is not None and rb.size and index.needs_store[clause].any():
            rb, clause = _before_enough_sure(index, rb, clause, limit - found[active], last[active])
            ok, deg = store_checks(index, sub, rb, clause, store, sub_clk,
                                   None if state_rows is None else state_rows[active])
            degraded[active] |= deg
            rb, clause = rb[ok], clause[ok]
        camp = index.owner[clause].astype(np.int64)
        b = active[rb]
        keep = camp != last[b]
        keep[1:] &= (b[1:] != b[:-1]) | (camp[1:] != camp[:-1])  # one pair per campaign
        b, camp = b[keep], camp[keep]
        below = value[camp] < floor_cpm
        floored = b[below]  # everything after a campaign below the floor is below it too: done
        b, camp = b[~below], camp[~below]
        if b.size:
            start = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
            run = np.diff(np.r_[start, b.size])
            rank = found[b] + np.arange(b.size) - np.repeat(start, run)
            top = rank < limit
            out.append((b[top], camp[top], rank[top]))
            first = b[start]
            last[first] = camp[start + run - 1]
            found[first] = np.minimum(found[first] + run, limit)
        found[floored] = limit
        active = active[found[active] < limit]  # the stop rule, when rank order is known: the limit-th found
        w, step = w1, step * stoprule.GROWTH
    if not out:
        return _NO_DECISIONS, degraded
    req, camp, rank = (np.concatenate([o[i] for o in out]) for i in range(3))
    # each request's ranks are 0..k-1: its answers go to its own slice, at their rank (no sort)
    count = np.bincount(req, minlength=n_req)
    order = np.empty(req.size, dtype=np.int64)
    order[(np.cumsum(count) - count)[req] + rank] = np.arange(req.size)
    req, camp = req[order], camp[order]
    return Ranked(req, (rank[order] + 1).astype(np.int16), camp, value[camp], index.prior_ctr[camp]), degraded


def _before_enough_sure(
    index: CampaignIndex, rb: np.ndarray, clause: np.ndarray, need: np.ndarray, last: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The (request ``rb``, clause) pairs, in rank order per request, up to each request's
    ``need[rb]``-th campaign that needs no state (it passes for sure, and everything after it
    ranks below enough answers): the rest need no store checks. ``last``: each request's last
    campaign of the previous step (its clauses may go on here)."""
    camp = index.owner[clause]
    first = camp != last[rb]  # a campaign's first clause in this step
    first[1:] &= (rb[1:] != rb[:-1]) | (camp[1:] != camp[:-1])
    sure = first & index.state.sure[camp]
    counted = np.cumsum(sure)
    start = np.flatnonzero(np.r_[True, rb[1:] != rb[:-1]])
    base = np.repeat((counted - sure)[start], np.diff(np.r_[start, rb.size]))
    keep = counted - sure - base < need[rb]  # sure campaigns strictly before this pair
    return rb[keep], clause[keep]


def _decide_pruned(
    layout: Layout, tx: Taxonomy, store: StateStore | None, reqs: Requests, clk: Clocks, limit: int,
    floor_cpm: float, first_words: int, state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """Any other model: each step scores its candidates; a request is done once its
    ``limit``-th best eCPM (:func:`targeting.stoprule.merge_best`) is strictly above the
    global bound of the positions after the step (``layout.ub_at``)."""
    index = layout.index
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    best = np.full((n_req, limit), -np.inf)  # each request's `limit` best eCPMs so far, in no order
    found: list[Found] = []
    last = np.full(n_req, -1, dtype=np.int64)  # the last campaign found (its clauses may straddle two steps)
    active = np.arange(n_req)
    days = day_groups(clk.days)
    have = request_tag_masks(reqs, len(index.tag_index))
    w, step = 0, first_words
    while active.size and w < index.n_words and layout.ub_at[w] >= floor_cpm:  # the floor
        w1 = min(index.n_words, w + step)
        b, camp = _visit(layout, store, reqs, clk, days, have, state_rows, degraded, active, slice(w, w1))
        # a campaign's clauses may straddle two steps: one pair for it
        keep = camp != last[b]
        if b.size:
            ends = np.flatnonzero(np.r_[b[1:] != b[:-1], True])
            last[b[ends]] = camp[ends]
        b, camp = b[keep], camp[keep]
        pctr = pair_pctr(layout, tx, reqs, b, camp)
        values = ecpm(index, camp, pctr)
        above = values >= floor_cpm
        found.append((b[above], camp[above], pctr[above], values[above]))
        kth = stoprule.merge_best(best, active, found[-1][0], found[-1][3])
        active = active[~stoprule.done(kth, layout.ub_at[w1])]
        w, step = w1, step * stoprule.GROWTH
    return _rank_found(found, best), degraded


def _decide_blocks(
    layout: Layout, store: StateStore | None, reqs: Requests, clk: Clocks, limit: int, floor_cpm: float,
    first_chunk: int, state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """A model that splits its logit: the threshold algorithm over ``layout.blocks``, by
    :mod:`targeting.stoprule`.

    Every request walks every block from its head, at its own pace. A block's bound at the
    request's next position there (:meth:`Blocks.bounds`) bounds all it has not visited in
    it; the request needs the block while that bound is at least the floor and not strictly
    below its ``limit``-th best eCPM so far (that never reverses: the bound only falls, the
    ``limit``-th best only rises), and is done when it needs no block.

    Each round gives every request a level (:func:`targeting.stoprule.level`) and visits, in
    each needed block whose bound reaches the level, the positions whose bound does
    (:meth:`Blocks.below`; at most ``first_chunk``, then ``GROWTH`` times the request's last
    chunk in that block; at least one campaign). The highest
    bounds go first, which raises the ``limit``-th best soonest: most requests visit two or
    three blocks of the thirteen, and once the ``limit``-th best is the level, the round
    visits all that is left. The words of all the chunks are matched as scattered (request,
    word) pairs (:class:`PairMatcher`), the candidates scored, and each request's ``limit``
    best eCPMs kept (:func:`targeting.stoprule.merge_best`) for the stop test."""
    index, model, bl = layout.index, layout.split, layout.blocks
    assert model is not None and bl is not None
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    users = model.user_logits(reqs)
    scales = bl.scales(users)
    pm = PairMatcher(layout, reqs, clk)
    end = bl.start[1:]
    at = np.repeat(bl.start[None, :-1], n_req, axis=0)  # [B, J]: each request's next position per block
    size = np.full(at.shape, first_chunk, dtype=np.int64)
    bound = bl.bounds(at, scales)
    kth = np.full(n_req, -np.inf)
    need = stoprule.needed(bound, kth[:, None], floor_cpm)
    best = np.full((n_req, limit), -np.inf)  # each request's `limit` best eCPMs so far, in no order
    found: list[Found] = []
    active = np.flatnonzero(need.any(axis=1))
    need, bound, kth = need[active], bound[active], kth[active]
    while active.size:
        level = stoprule.level(kth, np.max(np.where(need, bound, -np.inf), axis=1))
        vr, vj = np.nonzero(need & (bound >= level[:, None]))  # by request, then block: positions ascend
        vq = active[vr]
        p0 = at[vq, vj]
        upto = np.minimum(p0 + size[vq, vj], end[vj])
        scale = scales[vq, bl.scale_of[vj]]
        short = np.flatnonzero(bl.bound_at(upto, vj, scale) < level[vr])  # the chunk may stop sooner
        with np.errstate(divide="ignore"):
            upto[short] = np.maximum(p0[short] + 1, bl.below(vj[short], np.log(level[vr[short]]), scale[short]))
        p1 = layout.run_end[upto - 1]  # never splitting a campaign
        at[vq, vj] = p1
        size[vq, vj] *= stoprule.GROWTH
        b, camp = _visit_chunks(layout, pm, store, reqs, clk, state_rows, degraded, vq, p0, p1)
        pctr = model.predict_user_pairs(users, b, camp, index)
        values = ecpm(index, camp, pctr)
        above = values >= floor_cpm
        found.append((b[above], camp[above], pctr[above], values[above]))
        kth = stoprule.merge_best(best, active, found[-1][0], found[-1][3])
        bound[vr, vj] = bl.bound_at(p1, vj, scale)  # only the blocks visited moved on
        need = stoprule.needed(bound, kth[:, None], floor_cpm)
        going = np.any(need, axis=1)
        active, need, bound, kth = active[going], need[going], bound[going], kth[going]
    return _rank_found(found, best), degraded


def _rank_found(found: list[Found], best: np.ndarray) -> Ranked:
    """The answers among the ``found`` pairs, given each request's ``limit`` best eCPMs
    (``best``, :func:`targeting.stoprule.merge_best`): by request, eCPM descending, ties by campaign position,
    the first ``limit``."""
    req, camp, pctr, values = (np.concatenate([f[i] for f in found]) if found else _NONE_FOUND[i] for i in range(4))
    top = values >= best.min(axis=1)[req]  # ties included
    req, camp, pctr, values = req[top], camp[top], pctr[top], values[top]
    order = _rank_order(req, values, camp)
    req, camp, pctr, values = req[order], camp[order], pctr[order], values[order]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]]) if req.size else req
    rank = np.arange(req.size) - np.repeat(starts, np.diff(np.r_[starts, req.size])) + 1
    top = rank <= best.shape[1]
    return Ranked(req[top], rank[top].astype(np.int16), camp[top], values[top], pctr[top])


def _visit_chunks(
    layout: Layout, pm: PairMatcher, store: StateStore | None, reqs: Requests, clk: Clocks,
    state_rows: np.ndarray | None, degraded: np.ndarray, req: np.ndarray, p0: np.ndarray, p1: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of request ``req[i]`` at positions ``p0[i]:p1[i]`` of ``layout`` (the
    chunks by request, then position; none splits a campaign), store checks passed:
    (int64[P] request, int64[P] campaign), by request then position, one pair per campaign.
    Sets ``degraded`` of the requests whose store checks degraded."""
    w0 = p0 // 64
    n = (p1 + 63) // 64 - w0  # words per chunk
    chunk = np.repeat(np.arange(p0.size), n)
    pw = w0[chunk] + np.arange(chunk.size) - np.repeat(np.cumsum(n) - n, n)
    bit0 = 64 * pw
    mask = bitset.LOW[np.clip(p1[chunk] - bit0, 0, 64)] & ~bitset.LOW[np.clip(p0[chunk] - bit0, 0, 64)]
    pr = req[chunk]
    words = pm.words(pr, pw) & mask
    k, bit = bitset.bit_pairs(words[:, None])
    rb, position = pr[k], pw[k] * 64 + bit
    ok = tag_checks(layout, pm.have[rb], position)
    rb, clause = rb[ok], layout.perm[position[ok]]
    index = layout.index
    if store is not None and rb.size and index.needs_store[clause].any():
        ok, deg = store_checks(index, reqs, rb, clause, store, clk, state_rows)
        degraded |= deg
        rb, clause = rb[ok], clause[ok]
    return campaign_pairs(layout, rb, clause)


def _visit(
    layout: Layout, store: StateStore | None, reqs: Requests, clk: Clocks, days: tuple[np.ndarray, np.ndarray],
    have: np.ndarray, state_rows: np.ndarray | None, degraded: np.ndarray, rq: np.ndarray, cols: slice,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of requests ``rq`` (block positions, ascending) in the words ``cols`` of
    ``layout`` (:func:`match_words`, :func:`tag_checks` with the requests' tag masks ``have``),
    store checks passed: (int64[P] request, int64[P]
    campaign), by request then position, one pair per campaign (a campaign cut at the ends
    may come again in the next words). Sets ``degraded`` of the requests whose store checks
    degraded."""
    sub = reqs.take(rq)
    sub_clk = Clocks(clk.slots[rq], clk.days[rq], clk.day_fraction[rq])
    words = match_words(layout, sub, sub_clk, cols, (days[0], days[1][rq]))
    rb, bit = bitset.bit_pairs(words)
    ok = tag_checks(layout, have[rq[rb]], cols.start * 64 + bit)
    rb, clause = rb[ok], layout.perm[cols.start * 64 + bit[ok]]
    index = layout.index
    if store is not None and rb.size and index.needs_store[clause].any():
        ok, deg = store_checks(index, sub, rb, clause, store, sub_clk, None if state_rows is None else state_rows[rq])
        degraded[rq] |= deg
        rb, clause = rb[ok], clause[ok]
    rb, camp = campaign_pairs(layout, rb, clause)
    return rq[rb], camp


__all__ = ["Ranked", "decide_requests", "pair_pctr"]
