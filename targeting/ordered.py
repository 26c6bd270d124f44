"""The decide fast path: clause bitsets in eCPM-bound order, as Python integers.

:func:`targeting.decide.prepare` matches every clause and scores every
candidate; at 10k campaigns that is a thousand candidates per request, most of
which cannot make the answer. Here the clause bits are in the
model's visit order (:class:`targeting.layout.Layout`: highest eCPM bound first, or
a learned model's blocks), and each bitset row is one Python ``int``: a
whole-index AND is a single C loop over a few hundred machine words, with none
of numpy's per-call cost.

A request then

1. ANDs its rows (geo, gender, age, scene, the time slot in each zone, its tag
   combination, live campaigns, minus budget-blocked ones) into one ``int``;
2. counts the campaigns it holds (``eligible``) with one popcount;
3. ranks candidates from bit 0 upwards by the one stop rule (:mod:`targeting.stoprule`,
   the batch scorer's too). With the prior model a position's eCPM is known in
   advance and position order is rank order, so a plain-Python walk over the set
   bits stops at the ``limit``-th campaign that needs no per-user state. With a
   :class:`~targeting.scoring.SplitModel`, each block of the layout
   (``targeting.bounds``: CPM campaigns by bid, each category's CPC campaigns by
   their part of the logit) is walked from its head, a growing chunk at a time and
   the blocks with the highest bounds first, scored in numpy, until the block's
   bound for this request is strictly below the ``limit``-th such campaign's eCPM.
   Any other model: one walk in global-bound order, with the same stop test.

The answer is exactly :func:`targeting.decide.prepare`'s (a property test
compares them): same ranking, ties by campaign id, same contenders for the
store, same ``eligible``. ``explain`` keeps the exhaustive path.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import bitset, stoprule
from .bounds import BLOCKS_FROM, Blocks
from .compiler import CampaignIndex
from .decide import Pending, contenders, decision, point_of, run_starts, state_query
from .layout import BoundedCache, Layout
from .matcher import Moment, moment
from .request import Request
from .scoring import ClickModel, ecpm
from .taxonomy import Taxonomy

FIRST_STEP = 512  # positions in the walk's first chunk (then stoprule.GROWTH times the last)
BLOCK_STEP = 256  # the same per block of a Blocks layout (cut at the level: see _walk_blocks)
# a walk's scored chunks: (positions, campaigns, pCTR, eCPM) each
Seen = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class OrderedIndex:
    """A :class:`Layout` as Python integers, for one request at a time.

    Position ``i`` is clause ``perm[i]`` of campaign ``owner[i]``; a campaign's
    clauses are adjacent. ``ub[i]`` bounds the eCPM of positions ``i`` and
    beyond (``ub[m] = -inf``). With the prior model the eCPM of a position is
    known without the request (``exact``; ``heads``)."""

    layout: Layout
    index: CampaignIndex
    model: ClickModel
    rows: list[int]
    perm: np.ndarray  # int64[m]
    owner: np.ndarray  # int64[m]
    ub: np.ndarray  # float64[m + 1]
    ub_list: list[float]  # the same, for scalar reads
    blocks: Blocks | None  # a model that splits its logit: the block layout of this order (``targeting.bounds``)
    run_end: np.ndarray  # int64[m]: position after the last clause of this position's campaign
    run_of: list[tuple[int, int]]  # per campaign: (first position, number of clauses)
    exact: bool
    run_end_list: list[int]
    owner_list: list[int]  # owner, perm, free and several as lists: the prior model's walk reads
    perm_list: list[int]  # them one element at a time, where a list is several times faster than numpy
    free_list: list[bool]
    several_list: list[bool]  # per position: its campaign has several clauses
    heads: list[dict[str, Any]] | None  # prior model: each campaign's decision but "bid" (decide.finish)
    free: np.ndarray  # bool[n_campaigns]: the campaign needs no per-user state (index.needs_user negated)
    floor_key: np.ndarray  # float64[m], ascending: minus the eCPM (prior) or its bound (learned) per position
    last: int  # bits: last clause of each campaign
    spread: tuple[tuple[int, int], ...]  # (shift, mask) steps that OR a campaign's bits into its last clause
    full: int
    all_or: tuple[tuple[int, ...], ...]  # all_or[k][i]: OR of the ``all`` rows of all_tags_list[i : i + 2**k]
    # derived rows, per tag combination, local dates and blocked set (the layout's cache policy)
    _tags: BoundedCache[tuple[int, ...], int]
    _live: BoundedCache[tuple[int, ...], int]
    _blocked: BoundedCache[int, tuple[Any, int]]

    @property
    def m(self) -> int:
        return int(self.perm.size)

    # ------------------------------------------------------------ matching
    def match(self, p: Any, mo: Moment) -> int:
        """Bits (in this order) of the clauses whose targeting and flight accept ``p`` at ``mo``."""
        ix, rows = self.index, self.rows
        x = rows[ix.geo_base + p.geo] & rows[ix.gender_base + p.gender] & rows[ix.age_base + p.age] \
            & rows[ix.scene_base + p.scene]
        if not x:
            return 0
        t = 0
        for base, slot in zip(ix.time_base, mo.slots):
            t |= rows[base + slot]
        x &= t
        if x:
            x &= self._tag_bits(p.tags)
        if x:
            x &= self._live_bits(mo.days)
        return x

    def _tag_bits(self, tags: tuple[int, ...]) -> int:
        """Clauses whose tag conditions hold for exactly the (sorted) ``tags``; cached per combination.
        The ``all``/``none`` part is :func:`targeting.matcher.negative_rows` ORed, the ``all`` rows
        of the tags the request lacks taken a stretch at a time (:meth:`_all_missing`)."""
        hit = self._tags.get(tags)
        if hit is None:
            ix, rows = self.index, self.rows
            n_tags = len(ix.tag_index)
            hit = self.full
            for base in ix.any_base:
                one = rows[base + n_tags]
                for t in tags:
                    one |= rows[base + t]
                hit &= one
            neg = self._all_missing(tags)
            for t in tags:
                neg |= rows[ix.none_base + t]
            hit ^= hit & neg  # hit & ~neg without a negative big int (much slower in CPython)
            self._tags.put(tags, hit)
        return hit

    def _all_missing(self, tags: tuple[int, ...]) -> int:
        """OR of the ``all`` rows of the tags the request lacks: the stretches of
        ``index.all_tags_list`` between the request's tags, each as two
        overlapping power-of-two blocks of ``all_or`` (OR is idempotent)."""
        used = self.index.all_tags_list
        out, a = 0, 0
        for t in (*tags, None):
            b = len(used) if t is None else bisect_left(used, t)
            if b > a:
                k = (b - a).bit_length() - 1
                level = self.all_or[k]
                out |= level[a] | level[b - (1 << k)]
            a = b + 1 if t is not None and b < len(used) and used[b] == t else b
        return out

    def _live_bits(self, days: tuple[int, ...]) -> int:
        hit = self._live.get(days)
        if hit is None:
            hit = self._live.put(days, bitset.to_int(self.index.live(days)[self.owner]))
        return hit

    def blocked_bits(self, blocked: dict[int, str]) -> int:
        """The clauses of the spend mirror's blocked campaigns, as bits in this order. The
        mirror hands out the same dict until its answer changes: cached by identity."""
        hit = self._blocked.get(id(blocked))
        if hit is None or hit[0] is not blocked:
            if len(blocked) > 64:  # one pass over the positions
                bits = bitset.to_int(np.isin(self.owner, np.fromiter(blocked, dtype=np.int64, count=len(blocked))))
            else:  # a campaign's clauses are one run of positions
                bits = 0
                for ci in blocked:
                    start, n = self.run_of[ci]
                    bits |= ((1 << n) - 1) << start
            hit = self._blocked.put(id(blocked), (blocked, bits))
        return hit[1]

    def count(self, x: int) -> int:
        """Campaigns with at least one clause in ``x``."""
        for shift, mask in self.spread:
            x |= (x << shift) & mask
        return (x & self.last).bit_count()

    def positions(self, x: int, lo: int, hi: int) -> np.ndarray:
        """int64[]: the set bits of ``x`` in ``[lo, hi)``, ascending."""
        return bitset.int_bits((x >> lo) & ((1 << (hi - lo)) - 1), hi - lo) + lo


def _heads(index: CampaignIndex, starts: np.ndarray, value: np.ndarray, pctr: np.ndarray) -> list[dict[str, Any]]:
    """Each campaign's decision without its "bid", from the eCPM and pCTR at its first position."""
    out = []
    for (cid, adv, kind, bid), at in zip(index.shown, starts.tolist()):
        d = decision(cid, adv, kind, bid, float(value[at]), float(pctr[at]))
        del d["bid"]
        out.append(d)
    return out


def _range_or(level: list[int]) -> tuple[tuple[int, ...], ...]:
    """Sparse table: entry [k][i] is the OR of ``level[i : i + 2**k]``."""
    table = [tuple(level)]
    k = 1
    while (1 << k) <= len(level):
        prev, half = table[-1], 1 << (k - 1)
        table.append(tuple(prev[i] | prev[i + half] for i in range(len(level) - (1 << k) + 1)))
        k += 1
    return tuple(table)


def ordered_index(layout: Layout, blocks_from: int = BLOCKS_FROM) -> OrderedIndex:
    """``layout`` as Python integers. Built by the engine's snapshot, once per rule set and
    model, and held there with the layout.

    The block walk needs more than ``blocks_from`` clauses: a smaller index is one chunk of
    the global walk, and one round of numpy beats a round per block (300 campaigns:
    88 µs vs 140 µs per decision)."""
    index, model = layout.index, layout.model
    assert model is not None, "the identity layout does not rank"
    m = layout.m
    perm, owner, ub = layout.perm, layout.owner, layout.ub
    rows = [int.from_bytes(r.tobytes(), "little") for r in layout.rows[:-1]]
    starts, counts, run_end = layout.run_start, layout.run_count, layout.run_end
    pos = np.arange(m)
    same_prev = pos != starts[owner]  # not the first clause of its campaign
    spread = []
    s, shift = bitset.to_int(same_prev), 1
    while shift < (int(counts.max()) if m else 1):
        spread.append((shift, s))
        s &= s << shift
        shift *= 2
    exact = layout.exact
    pctr = index.prior_ctr[owner] if exact else np.zeros(0)
    value = layout.value[owner] if exact else np.zeros(0)
    free = ~index.needs_user
    row_bytes = m // 8 + 64
    return OrderedIndex(
        layout=layout, index=index, model=model, rows=rows, perm=perm, owner=owner, ub=ub, ub_list=ub.tolist(),
        blocks=layout.blocks if m > blocks_from else None,
        run_end=run_end, run_end_list=run_end.tolist(), run_of=list(zip(starts.tolist(), counts.tolist())), exact=exact,
        owner_list=owner.tolist(), perm_list=perm.tolist(), free_list=free.tolist(),
        several_list=(counts[owner] > 1).tolist(), free=free,
        heads=_heads(index, starts, value, pctr) if exact else None,
        floor_key=-value if exact else -ub[:-1], last=bitset.to_int(pos == run_end - 1), spread=tuple(spread),
        full=(1 << m) - 1, all_or=_range_or([rows[index.all_base + t] for t in index.all_tags_list]),
        _tags=BoundedCache(row_bytes), _live=BoundedCache(row_bytes), _blocked=BoundedCache(row_bytes),
    )


def prepare(
    o: OrderedIndex, tx: Taxonomy, req: Request, blocked: dict[int, str] | None = None,
    mo: Moment | None = None, first_step: int | None = None,
) -> Pending:
    """:func:`targeting.decide.prepare` for a request without ``explain``, visiting
    only the head of the bound order."""
    index = o.index
    mo = mo or moment(index.zones, req.ts)
    p = point_of(req, tx, index.tag_index)
    x = o.match(p, mo)
    reasons: dict[int, str] = {}
    if x and blocked:
        b = o.blocked_bits(blocked)
        if x & b:
            if "store" in blocked.values():  # only store failures change the answer's ``degraded``
                hit = np.unique(o.owner[o.positions(x & b, 0, o.m)])
                reasons = {ci: blocked[ci] for ci in hit.tolist()}
            x ^= x & b
    pend = Pending(req, mo, p, [], [], None, budget_reasons=reasons, heads=o.heads)
    if not x:
        return pend
    floor = req.floor_cpm
    # positions at or past ``stop`` cannot reach the floor
    stop = o.m if floor <= 0 else int(np.searchsorted(o.floor_key, -floor, side="right"))
    if o.exact:
        needs = _walk_exact(o, pend, x, stop, first_step or FIRST_STEP)
        # the first ``stop`` positions are exactly the ones at or above the floor
        pend.n_candidates = o.count(x if stop == o.m else x & ((1 << stop) - 1))
    elif o.blocks is not None:
        needs = _walk_blocks(o, pend, x, first_step or BLOCK_STEP)
        # with a floor, every campaign that reaches it was visited
        pend.n_candidates = o.count(x) if floor <= 0 else len(pend.ranked)
    else:
        needs, lo = _walk_scored(o, pend, x, stop, first_step or FIRST_STEP)
        pend.n_candidates = _candidates(o, req, x, lo, stop, len(pend.ranked))
    state_query(index, pend, needs)
    return pend


def _walk_exact(o: OrderedIndex, pend: Pending, x: int, stop: int, step: int) -> list[int]:
    """Prior model: a position's eCPM is known, and position order is rank order. Walk the
    set bits from the lowest, in plain Python (a decision visits tens of them), up to the
    ``limit``-th campaign that needs no per-user state: everything after it ranks below it
    (the stop rule, :mod:`targeting.stoprule`, when rank order is known).
    Fills ``pend.ranked`` and, for campaigns with several clauses, ``pend.clauses`` (a
    single-clause campaign's clause is known); eCPM and pCTR are in ``pend.heads``.
    Returns the contenders that need state."""
    owner, free, perm, several = o.owner_list, o.free_list, o.perm_list, o.several_list
    needs: list[int] = []
    ranked, clauses = pend.ranked, pend.clauses
    need, last, lo = pend.request.limit, -1, 0
    while lo < stop:
        hi = min(lo + step, stop)
        chunk = ((x >> lo) if lo else x) & ((1 << (hi - lo)) - 1)
        while chunk:
            low = chunk & -chunk
            i = lo + low.bit_length() - 1
            chunk ^= low
            if several[i]:
                clauses.append(perm[i])
            ci = owner[i]
            if ci == last:  # another clause of the same campaign
                continue
            last = ci
            ranked.append(ci)
            if free[ci]:
                need -= 1
                if not need:
                    return needs
            else:
                needs.append(ci)
        lo, step = hi, step * stoprule.GROWTH
    return needs


def _walk_scored(o: OrderedIndex, pend: Pending, x: int, stop: int, step: int) -> tuple[list[int], int]:
    """Any other learned model: pCTR depends on the request, so candidates are scored a block of
    positions at a time (numpy over the block) and ranked at the end; the walk stops once
    the ``limit``-th campaign that needs no state beats every bound not yet visited.
    Returns (contenders that need state, first position not visited)."""
    index, model, req = o.index, o.model, pend.request
    floor, limit = req.floor_cpm, req.limit
    seen: Seen = []
    lo = 0
    while lo < stop:
        hi = int(o.run_end[min(lo + step, stop) - 1])  # never split a campaign's clauses
        pos = o.positions(x, lo, hi)
        lo, step = hi, step * stoprule.GROWTH
        if not pos.size:
            continue
        camp = o.owner[pos]
        c = camp[run_starts(camp)]
        q = model.predict(req, c, index)
        seen.append((pos, c, q, ecpm(index, c, q)))
        kth = _kth_free(o, seen, floor, limit)
        if stoprule.done(kth, o.ub_list[lo]):
            break
    return _rank_seen(o, pend, seen), lo


def _walk_blocks(o: OrderedIndex, pend: Pending, x: int, step: int) -> list[int]:
    """A model that splits its logit: the threshold algorithm over ``o.blocks`` by
    :mod:`targeting.stoprule`, as the batch walk does it (``batchrank._decide_blocks``). A
    block is needed while its bound for this request (:meth:`Blocks.bound_one`) reaches the
    floor and is not strictly below the ``limit``-th best campaign that needs no state. Each
    round scores, in each needed block whose bound reaches the request's level, the positions
    whose bound does (at most ``step``, then ``GROWTH`` times the last, per block). With a
    floor every campaign that reaches it is counted (``eligible``), so the level is the floor
    and the ``limit``-th best stops nothing. Returns the contenders that need state."""
    index, model, req, bl = o.index, o.layout.split, pend.request, o.blocks
    assert bl is not None and model is not None
    floor, limit = req.floor_cpm, req.limit
    user = model.user_logit(req)
    scales = bl.scales(user).tolist()
    start, run_end = bl.start.tolist(), o.run_end_list
    lo, size = start[:-1], [step] * bl.n_blocks
    live = [(j, scales[k]) for j, k in enumerate(bl.scale_of.tolist()) if start[j] < start[j + 1]]
    kth = -math.inf
    seen: Seen = []
    while live:
        needed = []
        counted = kth if floor <= 0 else -math.inf
        for j, scale in live:
            bound = bl.bound_one(lo[j], scale)
            if stoprule.needed(bound, counted, floor):
                needed.append((bound, j, scale))
        if not needed:
            break
        level = float(stoprule.level(kth, max(b for b, _, _ in needed))) if floor <= 0 else floor
        log_level = math.log(level) if level > 0 else -math.inf
        mask, live = 0, []
        for bound, j, scale in needed:
            i, end = lo[j], start[j + 1]
            if bound >= level:
                hi = min(i + size[j], end)
                if level > 0:
                    hi = max(i + 1, bl.below_one(i, hi, log_level, scale))
                hi = run_end[hi - 1]  # never split a campaign's clauses
                mask |= ((1 << (hi - i)) - 1) << i
                lo[j], size[j] = hi, size[j] * stoprule.GROWTH
            if lo[j] < end:
                live.append((j, scale))
        hits = x & mask
        if not hits:
            continue
        pos = bitset.int_bits(hits, o.m)
        camp = o.owner[pos]
        c = camp[run_starts(camp)]  # (a campaign's clauses are adjacent, and in one chunk)
        q = model.predict_user(user, c, index)
        seen.append((pos, c, q, ecpm(index, c, q)))
        kth = _kth_free(o, seen, floor, limit)
    # with a floor, ``pend.ranked`` counts the eligible campaigns: all of them
    return _rank_seen(o, pend, seen, kth if floor <= 0 else -math.inf)


def _kth_free(o: OrderedIndex, seen: Seen, floor: float, limit: int) -> float:
    """The ``limit``-th best eCPM at or above the floor among the ``seen`` campaigns that need
    no per-user state (``-inf`` with fewer)."""
    vals = np.concatenate([s[3] for s in seen]) if len(seen) > 1 else seen[0][3]
    camps = np.concatenate([s[1] for s in seen]) if len(seen) > 1 else seen[0][1]
    free_vals = vals[o.free[camps]]
    return stoprule.kth_best(free_vals[free_vals >= floor], limit)


def _rank_seen(o: OrderedIndex, pend: Pending, seen: Seen, kth: float = -math.inf) -> list[int]:
    """Rank the ``seen`` campaigns at or above the floor and ``kth`` (the ``limit``-th best of
    those that need no state: nothing below it can be answered or contend) into ``pend``;
    returns the contenders that need state."""
    if not seen:
        return []
    floor, limit = pend.request.floor_cpm, pend.request.limit
    pos, camps, pctr, vals = seen[0] if len(seen) == 1 else (np.concatenate([s[i] for s in seen]) for i in range(4))
    above = vals >= max(floor, kth)
    camps, vals, pctr = camps[above], vals[above], pctr[above]
    order = np.lexsort((camps, -vals))
    camps, vals, pctr = camps[order], vals[order], pctr[order]
    pend.clauses = o.perm[pos].tolist()
    pend.ranked, pend.values, pend.pctr = camps.tolist(), vals.tolist(), pctr.tolist()
    return contenders(o.index, camps, limit)


def _candidates(o: OrderedIndex, req: Request, x: int, lo: int, stop: int, seen: int) -> int:
    """(Learned model) campaigns of ``x`` whose eCPM reaches the floor; ``seen`` of them
    were visited, all at positions below ``lo`` (a campaign boundary)."""
    if lo >= stop:
        return seen
    if req.floor_cpm <= 0:  # every eCPM is >= 0: every campaign counts, the visited ones included
        return o.count(x)
    pos = o.positions(x, lo, stop)  # with a floor: score the rest
    camp = np.unique(o.owner[pos])
    if not camp.size:
        return seen
    return seen + int(np.count_nonzero(ecpm(o.index, camp, o.model.predict(req, camp, o.index)) >= req.floor_cpm))


__all__ = ["BLOCK_STEP", "FIRST_STEP", "OrderedIndex", "ordered_index", "prepare"]
