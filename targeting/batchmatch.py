"""The decide pipeline over a block of ``B`` requests at once, as array operations.

Same answers as :func:`targeting.matcher.match` + :func:`targeting.decide.finish`
(a test checks this against ``Engine.decide``), but every step works on whole
arrays of :class:`targeting.batchrequests.Requests`: eligibility is a gather
of the index's clause rows for ``B × k`` row numbers reduced along the row
axis, pCTR is array math, ranking a partition per request.

Clauses are visited in rank order (prior model), in per-category blocks from
their heads (a learned :class:`targeting.model.ClickModel`, ``targeting.bounds``)
or by their campaign's eCPM bound (any other model), a few words at a time, and
a request stops as soon as nothing left can enter its top ``limit``
(:func:`decide_block`); store-backed checks (retargeting, frequency caps,
budgets) read the state once per step (array lookups in a
:class:`~targeting.stores.snapshot.StateSnapshot`, else one ``store.fetch``)
and apply the rules decide applies (:func:`targeting.decide.rules_hold` for
retargeting) to the visited candidates only.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np

from . import bitset
from .batchrequests import Clocks, Requests, clocks
from .bounds import BLOCKS_FROM, Blocks, block_order, blocks, ecpm_bound
from .compiler import CampaignIndex
from .decide import rules_hold
from .request import DEFAULT_LIMIT
from .scoring import ClickModel, PriorModel, ecpm
from .state import PACING_SLACK, cap_key, spend_key, window_bucket
from .stores.base import StateQuery, StateStore, StoreUnavailable, UserState
from .stores.snapshot import StateSnapshot
from .taxonomy import Taxonomy


# ------------------------------------------------------------------ matching
@dataclass(frozen=True, eq=False)
class ClauseTables:
    """The index's clause bitsets, columns in ``perm`` order (position → clause).

    ``rows``: uint64[n_rows + 1, n_words], a zero row appended as the target of
    padding; ``neg_words``: the words where ``all``/``none`` rows have bits;
    ``ub[i]``: an upper bound of the eCPM of every clause from position ``i`` on
    (``-inf`` at ``m``), ``ub_at[w]`` the same from word ``w`` on. The identity order serves eligibility; a
    model's visit order (:func:`ranking_tables`) lets ranking stop early.
    """

    perm: np.ndarray  # int64[n_clauses]
    owner: np.ndarray  # int32[n_clauses]: campaign of each permuted position
    rows: np.ndarray
    neg_words: np.ndarray
    ub: np.ndarray  # float64[n_clauses + 1]
    ub_at: np.ndarray  # float64[n_words + 1]
    _live: dict[tuple[int, ...], np.ndarray]

    def live(self, index: CampaignIndex, days: tuple[int, ...]) -> np.ndarray:
        """uint64[n_words]: active, in-flight clauses (``CampaignIndex.live_words`` in this order)."""
        hit = self._live.get(days)
        if hit is None:
            if self.perm is _IDENTITY.get(index):
                hit = index.live_words(days)
            else:
                today = np.asarray(days, dtype=np.int32)[index.zone_of]
                ok = index.active & (index.start_day <= today) & (today <= index.end_day)
                hit = bitset.pack(ok[self.owner]) if self.owner.size else np.zeros(1, dtype=np.uint64)
            if len(self._live) > 64:
                self._live.clear()
            self._live[days] = hit
        return hit


_IDENTITY: weakref.WeakKeyDictionary[CampaignIndex, np.ndarray] = weakref.WeakKeyDictionary()
_TABLES: weakref.WeakKeyDictionary[CampaignIndex, dict[Any, ClauseTables]] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def clause_tables(index: CampaignIndex, order: np.ndarray | None = None, key: Any = None,
                  bound: np.ndarray | None = None) -> ClauseTables:
    """Tables in index order (``order`` None) or by ``order`` (float64[n_campaigns], descending;
    ties by campaign position), cached per index and ``key``. ``bound`` (float64[n_campaigns],
    an upper bound of each campaign's eCPM; default ``order`` itself) gives ``ub_at``."""
    with _TABLES_LOCK:
        per = _TABLES.setdefault(index, {})
        hit = per.get(key if order is not None else None)
    if hit is not None:
        return hit
    m = index.n_clauses
    if order is None:
        perm = np.arange(m, dtype=np.int64)
        _IDENTITY[index] = perm
        rows = index.rows
        ub = np.full(m, np.inf)
    else:
        rank = np.empty(index.n_campaigns, dtype=np.int64)
        rank[np.lexsort((np.arange(index.n_campaigns), -order))] = np.arange(index.n_campaigns)
        perm = np.argsort(rank[index.owner], kind="stable").astype(np.int64)
        rows = _permute_bits(index.rows, perm) if m else index.rows
        ub = (order if bound is None else bound)[index.owner[perm]]
        ub = np.maximum.accumulate(ub[::-1])[::-1]  # of every position from here on
    rows = np.vstack([rows, np.zeros((1, index.n_words), dtype=np.uint64)])
    neg = rows[index.all_base:-1]
    neg_words = np.flatnonzero(np.bitwise_or.reduce(neg, axis=0)) if neg.size else np.zeros(0, np.int64)
    ub = np.append(ub, -np.inf)
    ub_at = ub[np.minimum(np.arange(index.n_words + 1) * 64, m)]
    tables = ClauseTables(perm, index.owner[perm], rows, neg_words, ub, ub_at, {})
    with _TABLES_LOCK:
        per = _TABLES.setdefault(index, {})
        if order is not None and len(per) > 8:
            per.clear()
        per[key if order is not None else None] = tables
    return tables


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


def _day_groups(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32[G, Z] distinct rows of ``days``, int64[B] group of each row), like
    ``np.unique(days, axis=0, return_inverse=True)`` but on one int64 code per row:
    one instant's local dates in any two zones lie within two days of each other."""
    z = days.shape[1]
    if z > 12:  # the code would overflow int64
        uniq, inv = np.unique(days, axis=0, return_inverse=True)
        return uniq, inv.reshape(-1)
    delta = days.astype(np.int64) - days[:, :1] + 2  # each 0..4
    code = days[:, 0].astype(np.int64) * 5 ** z + (delta * 5 ** np.arange(z)).sum(axis=1)
    _, first, inv = np.unique(code, return_index=True, return_inverse=True)
    return days[first], inv.reshape(-1)


def match_block(index: CampaignIndex, reqs: Requests, clk: Clocks | None) -> np.ndarray:
    """uint64[B, index.n_words]: the clauses :func:`targeting.matcher.match` accepts, per request.

    With ``clk`` None, time and flight dates are ignored (reach semantics)."""
    return match_words(index, clause_tables(index), reqs, clk, slice(0, index.n_words))


def match_words(index: CampaignIndex, tables: ClauseTables, reqs: Requests, clk: Clocks | None,
                cols: slice, days: tuple[np.ndarray, np.ndarray] | None = None,
                tag_rules: bool = True) -> np.ndarray:
    """uint64[B, len(cols)]: the words ``cols`` (a range) of :func:`match_block` in ``tables``'
    clause order. ``tag_rules`` False leaves out the ``all`` / ``none`` tag rules, for a
    caller that applies :func:`tag_rules_hold` to the bits (:class:`PairMatcher` matches
    scattered words). ``days``: :func:`_day_groups` of ``clk.days`` when the caller has it."""
    zero = tables.rows.shape[0] - 1
    n_tags = len(index.tag_index)
    # the few words asked for, for every row: later gathers copy only these
    full = (cols.start, cols.stop) == (0, index.n_words)
    rows = tables.rows if full else np.ascontiguousarray(tables.rows[:, cols])
    neg_at = np.flatnonzero((tables.neg_words >= cols.start) & (tables.neg_words < cols.stop))
    nw = tables.neg_words[neg_at]
    neg_at = nw - cols.start
    words = rows[index.geo_base + reqs.geo]
    words &= rows[index.gender_base + reqs.gender]
    words &= rows[index.age_base + reqs.age]
    words &= rows[index.scene_base + reqs.scene]
    if clk is not None:
        t = rows[index.time_base[0] + clk.slots[:, 0]]
        for z in range(1, len(index.zones)):
            t |= rows[index.time_base[z] + clk.slots[:, z]]
        words &= t
    tags = reqs.tags
    has_tag = tags >= 0
    tag_cols = np.ascontiguousarray(tags.T)  # one column of tags at a time: contiguous gathers
    for base in index.any_base:
        ored = np.repeat(rows[base + n_tags][None, :], len(reqs), axis=0)
        _or_rows(ored, rows, np.where(tag_cols >= 0, base + tag_cols, zero), zero)
        words &= ored
    if nw.size and tag_rules:
        neg_rows = tables.rows[:, nw]
        neg = np.zeros((len(reqs), nw.size), dtype=np.uint64)
        used = index.all_tags_used
        if used.size:
            used = used[neg_rows[index.all_base + used].any(axis=1)]  # tags with `all` bits in these words
        if used.size:
            member = np.zeros((len(reqs), n_tags), dtype=bool)
            r, c = np.nonzero(has_tag)
            member[r, tags[r, c]] = True
            # a request lacking tag t gets the `all` row of t (in place, a tag at a time: no [B, T, W] temporary)
            lacking = ~member[:, used]
            for k, row in enumerate(neg_rows[index.all_base + used]):
                np.bitwise_or(neg, row, out=neg, where=lacking[:, k:k + 1])
        _or_rows(neg, neg_rows, np.where(tag_cols >= 0, index.none_base + tag_cols, zero), zero)
        words[:, neg_at] &= ~neg
    if clk is not None:
        uniq, inv = days if days is not None else _day_groups(clk.days)
        lives = np.stack([tables.live(index, tuple(int(d) for d in u))[cols] for u in uniq])
        words &= lives[inv.reshape(-1)]
    return words


class PairMatcher:
    """:func:`match_words` for scattered (request, word) pairs of one block of requests: each
    request's rows once as offsets into the tables, then per pair just the words asked for.

    :meth:`words` leaves out the ``all`` / ``none`` tag rules; :meth:`tag_checks` applies them
    to the bits found (one tag bitmask per clause and per request instead of a row per tag)."""

    def __init__(self, index: CampaignIndex, tables: ClauseTables, reqs: Requests, clk: Clocks):
        self.index, self.tables = index, tables
        n_words = tables.rows.shape[1]
        zero = tables.rows.shape[0] - 1
        n_tags = len(index.tag_index)
        tags = reqs.tags.astype(np.int64)
        has = tags >= 0
        cols = [k for k in range(tags.shape[1]) if has[:, k].any()]  # the tag columns some request has

        def rows(*parts: Any) -> np.ndarray:
            return np.stack([np.asarray(p, dtype=np.int64) for p in parts], axis=1) * n_words

        self._and = rows(index.geo_base + reqs.geo, index.gender_base + reqs.gender,
                         index.age_base + reqs.age, index.scene_base + reqs.scene)
        self._time = rows(*(index.time_base[z] + clk.slots[:, z].astype(np.int64) for z in range(len(index.zones))))
        self._any = [rows(np.full(len(reqs), base + n_tags), *(np.where(has[:, k], base + tags[:, k], zero) for k in cols))
                     for base in index.any_base]
        uniq, inv = _day_groups(clk.days)
        self._lives = np.stack([tables.live(index, tuple(int(d) for d in u)) for u in uniq]).reshape(-1)
        self._day = inv.astype(np.int64) * n_words
        self._have = request_tag_masks(reqs, n_tags)

    def words(self, pr: np.ndarray, pw: np.ndarray) -> np.ndarray:
        """uint64[P]: word ``pw[i]`` of :func:`match_words` for request ``pr[i]``, but for the
        ``all`` / ``none`` tag rules."""
        flat = self.tables.rows.reshape(-1)
        at = pw[:, None]
        words = np.bitwise_and.reduce(flat[self._and[pr] + at], axis=1)
        words &= np.bitwise_or.reduce(flat[self._time[pr] + at], axis=1)
        words &= self._lives[self._day[pr] + pw]
        for rows in self._any:
            words &= np.bitwise_or.reduce(flat[rows[pr] + at], axis=1)
        return words

    def tag_checks(self, req: np.ndarray, position: np.ndarray) -> np.ndarray:
        """bool[P]: whether request ``req[i]`` passes the ``all`` and ``none`` tag rules of the
        clause at ``position[i]`` of the tables."""
        return tag_rules_hold(self.index, self.tables, self._have[req], position)


def tag_rules_hold(index: CampaignIndex, tables: ClauseTables, have: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bool[P]: whether requests with tags ``have`` (uint64[P, L], :func:`request_tag_masks`)
    pass the ``all`` and ``none`` tag rules of the clauses at ``position`` (int[P]) of
    ``tables``: one tag bitmask per clause, not a row per tag."""
    need, avoid = _tag_masks(index, tables)
    ok = np.ones(position.size, dtype=bool)
    for k in range(need.shape[1]):
        got = have[:, k]
        ok &= ((need[position, k] & ~got) | (avoid[position, k] & got)) == 0
    return ok


_TAG_MASKS: weakref.WeakKeyDictionary[ClauseTables, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def _tag_masks(index: CampaignIndex, tables: ClauseTables) -> tuple[np.ndarray, np.ndarray]:
    """(uint64[m, L] the tags each position's clause needs all of, uint64[m, L] the tags it
    must not have), tag ``t`` at bit ``t % 64`` of column ``t // 64``."""
    hit = _TAG_MASKS.get(tables)
    if hit is None:
        n_tags, m = len(index.tag_index), tables.perm.size
        width = max(1, -(-n_tags // 64))
        hit = (np.zeros((m, width), dtype=np.uint64), np.zeros((m, width), dtype=np.uint64))
        for out, base in zip(hit, (index.all_base, index.none_base)):
            for t in range(n_tags):
                on = byte_bits(tables.rows[base + t].view(np.uint8))
                out[on[on < m], t // 64] |= np.uint64(1 << (t % 64))
        _TAG_MASKS[tables] = hit
    return hit


def request_tag_masks(reqs: Requests, n_tags: int) -> np.ndarray:
    """uint64[B, L]: each request's tags as a bitmask, tag ``t`` at bit ``t % 64`` of column ``t // 64``."""
    width = max(1, -(-n_tags // 64))
    tags = reqs.tags.astype(np.int64)
    bit = np.left_shift(np.uint64(1), (tags % 64).astype(np.uint64))
    out = np.zeros((len(reqs), width), dtype=np.uint64)
    for k in range(width):
        out[:, k] = np.bitwise_or.reduce(np.where((tags >= 0) & (tags // 64 == k), bit, np.uint64(0)), axis=1)
    return out


def _or_rows(out: np.ndarray, rows: np.ndarray, idx: np.ndarray, zero: int) -> None:
    """``out[b] |= rows[idx[k, b]]`` for every k (``idx``: [K, B]; ``zero``: the zero row, which
    changes nothing), a column at a time: twice as fast as one [B, K, W] gather reduced along
    its middle axis. A column that is mostly ``zero`` (the requests' later tags: most have two
    or three) gathers only its other rows."""
    for col in idx:
        some = np.flatnonzero(col != zero)
        if some.size * 3 >= col.size:
            np.bitwise_or(out, rows[col], out=out)
        elif some.size:
            out[some] |= rows[col[some]]


# ------------------------------------------------------------------ store checks
@dataclass(frozen=True)
class _StateMeta:
    """Per index: what the store checks need, as arrays over campaigns (``n``) or clauses (``m``)."""

    cap_n: np.ndarray  # float64[n]: impressions allowed per window, inf = no cap
    cap_per: np.ndarray  # int8[n]: index into WINDOWS, -1 = no cap
    cap_prefix: np.ndarray  # object[n]: "cap:<id>:"
    spend_prefix: np.ndarray  # object[n]: "spend:<id>:"
    budget: np.ndarray  # float64[n]: daily budget, nan = none
    advertiser: np.ndarray  # int32[n]: index into ``advertisers``
    advertisers: tuple[str, ...]
    retargeting: np.ndarray  # bool[n]: the campaign's spec uses retargeting
    clause_rt: np.ndarray  # bool[m]: the clause has retargeting rules
    clause_rt_any: np.ndarray  # bool[m]: ... and some of them require an event
    clause_rt_keys: tuple[frozenset[tuple[str, str]], ...]  # per clause: the (advertiser, event) its rules name
    sure: np.ndarray  # bool[n]: no clause of the campaign needs state: it passes every store check


WINDOWS = ("hour", "day", "week")


def _rule_keys(rules: Any) -> frozenset[tuple[str, str]]:
    """The store keys (advertiser, event) that retargeting rules (``CampaignIndex.rt_rules``) read."""
    if rules is None:
        return frozenset()
    want, avoid = rules
    return frozenset([key for options in want for key, _ in options] + [key for key, _ in avoid])
_STATE_META: weakref.WeakKeyDictionary[CampaignIndex, _StateMeta] = weakref.WeakKeyDictionary()


def _state_meta(index: CampaignIndex) -> _StateMeta:
    hit = _STATE_META.get(index)
    if hit is None:
        cs = index.campaigns
        advs = tuple(sorted({c.advertiser for c in cs}))
        adv_pos = {a: i for i, a in enumerate(advs)}
        clauses = [cl for c in cs for cl in c.clauses]  # clause order = index order (compiler)
        capped = [c.cap_impressions is not None and c.cap_per is not None for c in cs]
        hit = _StateMeta(
            cap_n=np.array([c.cap_impressions if k else np.inf for c, k in zip(cs, capped)], dtype=np.float64),
            cap_per=np.array([WINDOWS.index(c.cap_per) if k else -1 for c, k in zip(cs, capped)], dtype=np.int8),
            cap_prefix=np.array([cap_key(c.id, "") for c in cs], dtype=object),
            spend_prefix=np.array([spend_key(c.id, "") for c in cs], dtype=object),
            budget=np.array([np.nan if c.daily_budget is None else c.daily_budget for c in cs]),
            advertiser=np.array([adv_pos[c.advertiser] for c in cs], dtype=np.int32),
            advertisers=advs,
            retargeting=np.array([c.spec.uses_retargeting for c in cs], dtype=bool),
            clause_rt=np.array([bool(cl.rt_any or cl.rt_none) for cl in clauses], dtype=bool),
            clause_rt_any=np.array([bool(cl.rt_any) for cl in clauses], dtype=bool),
            clause_rt_keys=tuple(_rule_keys(r) for r in index.rt_rules),
            sure=~np.isin(np.arange(index.n_campaigns), index.owner[index.needs_store]),
        )
        _STATE_META[index] = hit
    return hit


@lru_cache(maxsize=65536)
def _bucket(per: int, ordinal: int, hour: int) -> str:
    """:func:`targeting.state.window_bucket` of a local date and hour (what the keys need)."""
    d = dt.date.fromordinal(ordinal)
    return window_bucket(WINDOWS[per], dt.datetime(d.year, d.month, d.day, hour))


def _buckets(per: np.ndarray, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """object[k]: window labels, computing each distinct (window, date, hour) once."""
    labels, inv = _bucket_labels(per, day, hour)
    return np.array(labels, dtype=object)[inv]


def _unique(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(code, return_inverse=True)`` of int64 codes; without a sort when they span a
    range not much wider than their number (a block's window and spend codes: a few days)."""
    if code.size == 0:
        return code, np.zeros(0, dtype=np.int64)
    lo = int(code.min())
    span = int(code.max()) - lo + 1
    if span > 8 * code.size + 65_536:
        uniq, inv = np.unique(code, return_inverse=True)
        return uniq, inv.reshape(-1)
    off = code - lo
    present = np.zeros(span, dtype=bool)
    present[off] = True
    at = np.flatnonzero(present)
    number = np.zeros(span, dtype=np.int64)
    number[at] = np.arange(at.size)
    return at + lo, number[off]


def _bucket_labels(per: np.ndarray, day: np.ndarray, hour: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(the distinct window labels, int64[k] which one each (window, date, hour) has)."""
    d0 = int(day.min()) if day.size else 0
    n_days = int(day.max()) - d0 + 1 if day.size else 1
    code = (per.astype(np.int64) * n_days + (day.astype(np.int64) - d0)) * 24 + hour
    uniq, inv = _unique(code)
    labels = [_bucket(int(u // 24 // n_days), d0 + int(u // 24 % n_days), int(u % 24)) for u in uniq.tolist()]
    return labels, inv


def apply_store_checks(
    index: CampaignIndex, reqs: Requests, words: np.ndarray, store: StateStore, clk: Clocks,
) -> np.ndarray:
    """Clear, in place, the bits of clauses of ``words`` (uint64[B, n_words]) that fail
    retargeting, caps or budgets; see :func:`store_checks`. Returns bool[B] degraded."""
    if not index.store_words.any():
        return np.zeros(len(reqs), dtype=bool)
    need = words & index.store_words
    pb, pj = _bit_pairs(need)
    ok, degraded = store_checks(index, reqs, pb, pj, store, clk)
    drop = ~ok
    if drop.any():
        bj, jj = pb[drop], pj[drop]
        mask = np.left_shift(np.uint64(1), (jj & 63).astype(np.uint64))
        np.bitwise_and.at(words, (bj, jj >> 6), ~mask)
    return degraded


def _bit_pairs(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[P] row, int64[P] bit) of every set bit of uint64[B, W], sorted by row then bit.

    Byte by byte: the non-zero bytes, then each one's set bits from a 256-entry table
    (twice as fast as unpacking every bit of the non-zero words)."""
    b8 = np.ascontiguousarray(words).view(np.uint8)  # [B, 8W]; little-endian: byte k holds bits 8k..8k+7
    r, c = np.nonzero(b8)
    count, bit = _byte_table_bits(b8[r, c])
    return np.repeat(r, count), np.repeat(c, count) * 8 + bit


def byte_bits(raw: np.ndarray) -> np.ndarray:
    """int64[]: the set bits of the bytes ``raw`` (uint8[], little-endian bit order), ascending."""
    c = np.flatnonzero(raw)
    count, bit = _byte_table_bits(raw[c])
    return cast(np.ndarray, np.repeat(c, count) * 8 + bit)


def _byte_table_bits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[k] set bits of each byte of ``v``, int64[sum] those bits within their byte, in order)."""
    count = _BYTE_BITS[v]
    # the k-th bit of byte i is _BYTE_POS[_BYTE_START[v[i]] + k]
    at = np.repeat(_BYTE_START[v] - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    return count, _BYTE_POS[at]


_BYTE_BITS = np.array([v.bit_count() for v in range(256)], dtype=np.int64)
_BYTE_START = np.concatenate([[0], np.cumsum(_BYTE_BITS)[:-1]])
_BYTE_POS = np.array([i for v in range(256) for i in range(8) if v >> i & 1], dtype=np.int64)


def store_checks(
    index: CampaignIndex, reqs: Requests, pb: np.ndarray, pj: np.ndarray, store: StateStore, clk: Clocks,
    state_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Retargeting, frequency caps and budgets for (request ``pb[k]``, clause ``pj[k]``) pairs
    sorted by request, a campaign's clauses adjacent within a request (as in the index's and
    every ``clause_tables`` order); clauses that need no state pass. Returns (bool[P] ok,
    bool[B] degraded).

    State is read for the keys decide asks for (``targeting.state.cap_key`` /
    ``spend_key``): spend once per distinct campaign and local day; caps and
    events from a :class:`~targeting.stores.snapshot.StateSnapshot` in array
    operations (``score`` takes one when the store can), or from any other
    store with one ``store.fetch`` of one query per request plus the spend
    query (one round trip). Caps and pacing
    (``targeting.budget``'s rule: spent < budget and < budget × (day share +
    slack)) are array comparisons; retargeting rules of users who have events
    go through decide's own check. When the store is unavailable, every pair
    that needs it fails (fail closed, as decide's ``degraded``). ``state_rows``:
    ``store.positions(reqs.user_id)`` of a snapshot, when the caller has it."""
    degraded = np.zeros(len(reqs), dtype=bool)
    ok_all = np.ones(pj.size, dtype=bool)
    sel = np.flatnonzero(index.needs_store[pj]) if pj.size else pj
    if sel.size == 0:
        return ok_all, degraded
    pb, pj = pb[sel], pj[sel]
    pcamp = index.owner[pj].astype(np.int64)
    meta = _state_meta(index)
    n = index.n_campaigns
    key = pb * n + pcamp
    run = np.r_[True, key[1:] != key[:-1]]  # (request, campaign) pairs: equal ones are adjacent
    ukey, uinv = key[run], np.cumsum(run) - 1
    pairs = _Pairs(ukey // n, ukey % n, index, clk, meta)
    try:
        if isinstance(store, StateSnapshot):
            upos = store.positions(reqs.user_id) if state_rows is None else state_rows
            counters, spent, events, seen = _read_snapshot(store, index, upos, pairs)
        else:
            (counters, spent, events), seen = _read_fetch(store, reqs, pairs), None
    except StoreUnavailable:
        degraded[pairs.req] = True
        ok_all[sel] = False
        return ok_all, degraded
    ub, uc = pairs.req, pairs.camp
    budget = meta.budget[uc]
    pace = budget * np.minimum(1.0, clk.day_fraction[ub, pairs.zone] + PACING_SLACK)
    with np.errstate(invalid="ignore"):
        budget_ok = np.isnan(budget) | ((spent < budget) & (spent < pace))
    ok = ((counters < meta.cap_n[uc]) & budget_ok)[uinv]  # per (request, clause)
    rt = np.flatnonzero(ok & meta.clause_rt[pj])
    if rt.size:
        # users without any event the clause's rules name: "any" rules fail, "none" rules pass
        keys = meta.clause_rt_keys
        has = events[pb[rt]] != None
        has = rt[has if seen is None else has & seen[uinv[rt]]]
        named = has[np.array([not keys[j].isdisjoint(ev) for ev, j in zip(events[pb[has]].tolist(), pj[has].tolist())],
                             dtype=bool)]
        none = np.ones(rt.size, dtype=bool)
        none[np.searchsorted(rt, named)] = False
        ok[rt[none]] = ~meta.clause_rt_any[pj[rt[none]]]
        for k in named.tolist():
            b, j = int(pb[k]), int(pj[k])
            ok[k] = rules_hold(index.rt_rules[j], float(reqs.ts[b]), events[b])
    ok_all[sel] = ok
    return ok_all, degraded


class _Pairs:
    """Distinct (request, campaign) pairs that need state, by request, and what their keys need."""

    def __init__(self, req: np.ndarray, camp: np.ndarray, index: CampaignIndex, clk: Clocks, meta: _StateMeta):
        self.req, self.camp, self.meta, self.clk = req, camp, meta, clk
        self.zone = index.zone_of[camp]
        self.day = clk.days[req, self.zone]
        self.capped = np.flatnonzero(meta.cap_per[camp] >= 0)
        self.budgeted = np.flatnonzero(~np.isnan(meta.budget[camp]))
        self.rt = np.flatnonzero(meta.retargeting[camp])

    def cap_keys(self, at: np.ndarray) -> list[str]:
        """The frequency-cap counter key of pairs ``at``."""
        return (self.meta.cap_prefix[self.camp[at]] + self.window_labels(at)).tolist()  # type: ignore[no-any-return]

    def window_labels(self, at: np.ndarray) -> np.ndarray:
        """object[len(at)]: the cap window label of pairs ``at`` (each distinct one built once)."""
        labels, inv = self._windows(at)
        return np.array(labels, dtype=object)[inv]

    def window_codes(self, at: np.ndarray, numbers: Mapping[str, int]) -> np.ndarray:
        """int64[len(at)]: ``numbers[label]`` of each pair's cap window label, -1 when absent."""
        labels, inv = self._windows(at)
        return np.array([numbers.get(k, -1) for k in labels], dtype=np.int64)[inv]

    def _windows(self, at: np.ndarray) -> tuple[list[str], np.ndarray]:
        per = self.meta.cap_per[self.camp[at]]
        hour = np.zeros(at.size, dtype=np.int64)  # only hourly windows need it
        hourly = np.flatnonzero(per == WINDOWS.index("hour"))
        slots = self.clk.slots[self.req[at[hourly]], self.zone[at[hourly]]]
        hour[hourly] = (slots.astype(np.int64) % 48) // 2
        return _bucket_labels(per, self.day[at], hour)

    def spend_query(self) -> tuple[StateQuery | None, np.ndarray]:
        """(the query of the distinct spend keys (campaign, local day) or None, int64[budgeted] key of each)."""
        b = self.budgeted
        if b.size == 0:
            return None, b
        day = self.day[b].astype(np.int64)
        d0 = int(day.min())
        n_days = int(day.max()) - d0 + 1
        code, inv = _unique(self.camp[b] * n_days + (day - d0))
        camp, day = code // n_days, d0 + code % n_days
        keys = self.meta.spend_prefix[camp] + _buckets(
            np.full(code.size, WINDOWS.index("day")), day, np.zeros(code.size, dtype=np.int64))
        return StateQuery("", (), (), tuple(keys.tolist())), inv

    def spent(self, query: StateQuery | None, inv: np.ndarray, state: UserState | None) -> np.ndarray:
        out = np.zeros(self.req.size)
        if query is not None and state is not None:
            out[self.budgeted] = np.asarray(state.shared_counters, dtype=np.float64)[inv]
        return out


def _read_snapshot(
    snap: StateSnapshot, index: CampaignIndex, upos: np.ndarray, pairs: _Pairs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(float64[pairs] cap counters, float64[pairs] spend, object[B] events mapping or None per
    request, bool[pairs] the user has events of the campaign's advertiser) from a snapshot,
    given each request's user position in it (``upos``), by ``searchsorted`` over integer codes."""
    tables = snap.tables(index, pairs.meta.advertisers)
    counters = np.zeros(pairs.req.size)
    capped = pairs.capped[upos[pairs.req[pairs.capped]] >= 0]  # only users with state can have counts
    if capped.size and tables.codes.size:
        label = pairs.window_codes(capped, tables.labels)
        code = (upos[pairs.req[capped]] * index.n_campaigns + pairs.camp[capped]) * len(tables.labels) + label
        at, hit = _find(tables.codes, code)
        hit &= label >= 0
        counters[capped[hit]] = tables.values[at[hit]]
    rt = pairs.rt[upos[pairs.req[pairs.rt]] >= 0]  # only users with state can have events
    seen = np.zeros(pairs.req.size, dtype=bool)
    code = upos[pairs.req[rt]] * len(pairs.meta.advertisers) + pairs.meta.advertiser[pairs.camp[rt]]
    seen[rt] = _find(tables.seen, code)[1]
    return counters, _snapshot_spend(snap, index, pairs), snap.events_of(upos), seen


def _snapshot_spend(snap: StateSnapshot, index: CampaignIndex, pairs: _Pairs) -> np.ndarray:
    """float64[pairs]: each budgeted pair's campaign spend on the request's local day, from the
    snapshot's per-day spend arrays (a block's requests span a day or two)."""
    spent = np.zeros(pairs.req.size)
    b = pairs.budgeted
    if b.size:
        days, which = _unique(pairs.day[b].astype(np.int64))
        per_day = [snap.shared_by_campaign(index, pairs.meta.spend_prefix, _bucket(WINDOWS.index("day"), d, 0))
                   for d in days.tolist()]
        table = per_day[0] if len(per_day) == 1 else np.concatenate(per_day)
        spent[b] = table[which * index.n_campaigns + pairs.camp[b]]
    return spent


def _find(sorted_codes: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 position, bool found) of each of ``codes`` in ``sorted_codes``."""
    if sorted_codes.size == 0:
        return np.zeros(codes.size, dtype=np.int64), np.zeros(codes.size, dtype=bool)
    # searched in ascending order, each search starting where the last ended: into 100k codes,
    # 3-4x faster than keys in request order, the sort included
    order = np.argsort(codes)
    at = np.empty(codes.size, dtype=np.int64)
    at[order] = np.searchsorted(sorted_codes, codes[order])
    np.minimum(at, sorted_codes.size - 1, out=at)
    return at, sorted_codes[at] == codes


def _read_fetch(store: StateStore, reqs: Requests, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_read_snapshot`, with one ``store.fetch``: a query per request, plus spend."""
    meta, ub, uc, capped = pairs.meta, pairs.req, pairs.camp, pairs.capped
    n_adv = max(len(meta.advertisers), 1)
    rt_adv = np.unique(ub[pairs.rt] * n_adv + meta.advertiser[uc[pairs.rt]])
    users = np.union1d(ub[capped], rt_adv // n_adv)
    ends = np.concatenate([users, [len(reqs)]])
    cb = np.searchsorted(ub[capped], ends).tolist()
    ab = np.searchsorted(rt_adv // n_adv, ends).tolist()
    adv_names = np.array(meta.advertisers, dtype=object)[rt_adv % n_adv].tolist()
    cap_keys = pairs.cap_keys(capped)
    queries = [StateQuery(uid, tuple(adv_names[ab[k]:ab[k + 1]]), tuple(cap_keys[cb[k]:cb[k + 1]]), ())
               for k, uid in enumerate(reqs.user_id[users].tolist())]
    spend, inv = pairs.spend_query()
    states = list(store.fetch(queries + ([spend] if spend is not None else [])))
    counters = np.zeros(ub.size)
    if capped.size:
        counters[capped] = np.fromiter(
            (v for st in states[:users.size] for v in st.user_counters), dtype=np.float64, count=capped.size)
    events = np.full(len(reqs), None, dtype=object)
    events[users] = [st.events or None for st in states[:users.size]]
    return counters, pairs.spent(spend, inv, states[-1] if spend is not None else None), events


# ------------------------------------------------------------------ ranking
def eligible_pairs(index: CampaignIndex, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[P] request position, int64[P] campaign position): every eligible pair,
    sorted by request then campaign, each pair once however many clauses matched."""
    req, clause = _bit_pairs(words)
    if req.size == 0:
        return req, clause
    camp = index.owner[clause].astype(np.int64)
    keep = np.ones(req.size, dtype=bool)
    keep[1:] = (req[1:] != req[:-1]) | (camp[1:] != camp[:-1])
    return req[keep], camp[keep]


def pair_pctr(
    model: ClickModel, index: CampaignIndex, tx: Taxonomy, reqs: Requests, req: np.ndarray, camp: np.ndarray,
) -> np.ndarray:
    """float64[P]: P(click) of each (request, campaign) pair, as ``model.predict`` gives it."""
    if camp.size == 0:
        return np.zeros(0)
    if isinstance(model, PriorModel):
        return cast(np.ndarray, index.prior_ctr[camp])
    predict_pairs = getattr(model, "predict_pairs", None)
    if predict_pairs is not None:
        return cast(np.ndarray, predict_pairs(reqs, req, camp, index))
    # any other ClickModel: one call per request (correct, not fast)
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


_RANKING: weakref.WeakKeyDictionary[CampaignIndex, dict[Any, tuple[ClauseTables, Blocks | None]]] = \
    weakref.WeakKeyDictionary()


def ranking_tables(index: CampaignIndex, model: ClickModel) -> tuple[ClauseTables, Blocks | None]:
    """The clause tables in ``model``'s visit order and, for a model that splits its logit, their
    :class:`targeting.bounds.Blocks`; otherwise ordered by the global bound. Cached per index and
    model (the bounds and the order are computed once, not per call)."""
    key = (id(model), model.version)
    with _TABLES_LOCK:
        hit = _RANKING.get(index, {}).get(key)
    if hit is not None:
        return hit
    bound = ecpm_bound(index, model)
    order = block_order(index, model)
    tables = clause_tables(index, bound if order is None else order, key=key, bound=bound)
    hit = (tables, None if order is None else blocks(index, model, tables.owner))
    with _TABLES_LOCK:
        per = _RANKING.setdefault(index, {})
        if len(per) > 8:
            per.clear()
        per[key] = hit
    return hit


def decide_block(
    index: CampaignIndex, tx: Taxonomy, model: ClickModel, store: StateStore | None, reqs: Requests,
    *, limit: int = DEFAULT_LIMIT, floor_cpm: float = 0.0, block: int = 4096, first_words: int = 2,
    first_chunk: int = 32, blocks_from: int = BLOCKS_FROM,
) -> tuple[Ranked, np.ndarray]:
    """Decide every request of ``reqs``: (decisions, bool[B] degraded).

    Clauses are visited in the model's order (:func:`ranking_tables`), a few
    words at a time; a request is finished once its ``limit``-th best eCPM is
    above a bound of everything it has not yet visited (``targeting.bounds``),
    so most requests never touch most campaigns. The answer is exactly the
    exhaustive one (ties included: the stop test is strict). Store checks run
    on the visited candidates only, one ``store.fetch`` per step. The first
    step covers ``first_words`` words of clauses, each next one twice the last; with a block
    layout (``targeting.bounds``; an index of more than ``blocks_from`` clauses),
    ``first_chunk`` positions of each block."""
    if isinstance(model, PriorModel):
        # every campaign's eCPM is known up front: visit clauses in exactly the rank order
        value = prior_values(index)
        tables = clause_tables(index, value, key="prior")
    else:
        tables, layout = ranking_tables(index, model)
        if index.n_clauses <= blocks_from:  # a few words: the dense walk over them all beats the block walk
            layout = None
    parts: list[Ranked] = []
    degraded = np.zeros(len(reqs), dtype=bool)
    clk_all = clocks(index.zones, reqs.ts)
    # each request's user in a snapshot's state, looked up for all requests at once
    state_rows = store.positions(reqs.user_id) if isinstance(store, StateSnapshot) else None
    for s in range(0, len(reqs), block):
        sel = slice(s, s + block)
        sub = reqs.take(sel)
        clk = Clocks(clk_all.slots[sel], clk_all.days[sel], clk_all.day_fraction[sel])
        rows = None if state_rows is None else state_rows[sel]
        if isinstance(model, PriorModel):
            r, deg = _decide_in_order(index, store, sub, clk, tables, value, limit, floor_cpm, first_words, rows)
        elif layout is None:
            r, deg = _decide_pruned(index, tx, model, store, sub, clk, tables, limit, floor_cpm, first_words, rows)
        else:
            r, deg = _decide_blocks(index, model, store, sub, clk, tables, layout, limit, floor_cpm, first_chunk, rows)
        degraded[sel] = deg
        r.req = r.req + s
        parts.append(r)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Ranked(empty, empty.astype(np.int16), empty, np.zeros(0), np.zeros(0)), degraded
    return Ranked(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                    ("req", "rank", "camp", "ecpm", "pctr"))), degraded


def prior_values(index: CampaignIndex) -> np.ndarray:
    """float64[n_campaigns]: each campaign's eCPM under :class:`PriorModel` (the same for every request)."""
    return ecpm(index, np.arange(index.n_campaigns), index.prior_ctr)


def _decide_in_order(
    index: CampaignIndex, store: StateStore | None, reqs: Requests, clk: Clocks, tables: ClauseTables,
    value: np.ndarray, limit: int, floor_cpm: float, first_words: int, state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """:func:`_decide_pruned` for a model whose eCPM depends on the campaign only (priors).

    ``tables`` are ordered by ``value`` (descending, ties by campaign position:
    the rank order itself), so a request's candidates come out of the matched
    bits already ranked: each step appends them after the ones found before
    and a request is done at its ``limit``-th campaign (or at the first below
    the floor). No pool, no partition, no sort by value."""
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    found = np.zeros(n_req, dtype=np.int64)  # decisions so far
    last = np.full(n_req, -1, dtype=np.int64)  # the last campaign found (its clauses may straddle two steps)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    active = np.arange(n_req)
    day_uniq, day_inv = _day_groups(clk.days)
    tag_checked = tables.neg_words.size > 0
    have = request_tag_masks(reqs, len(index.tag_index))
    w, step = 0, first_words
    while active.size and w < index.n_words and tables.ub_at[w] >= floor_cpm:
        w1 = min(index.n_words, w + step)
        every = active.size == n_req  # the first step: no copy
        sub = reqs if every else reqs.take(active)
        sub_clk = clk if every else Clocks(clk.slots[active], clk.days[active], clk.day_fraction[active])
        words = match_words(index, tables, sub, sub_clk, slice(w, w1), (day_uniq, day_inv[active]), tag_rules=False)
        rb, bit = _bit_pairs(words)  # by request, then position: rank order
        if tag_checked:
            ok = tag_rules_hold(index, tables, have[active[rb]], w * 64 + bit)
            rb, bit = rb[ok], bit[ok]
        clause = tables.perm[w * 64 + bit]
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
        active = active[found[active] < limit]
        w, step = w1, step * 2
    if not out:
        empty = np.zeros(0, dtype=np.int64)
        return Ranked(empty, empty.astype(np.int16), empty, np.zeros(0), np.zeros(0)), degraded
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
    sure = first & _state_meta(index).sure[camp]
    counted = np.cumsum(sure)
    start = np.flatnonzero(np.r_[True, rb[1:] != rb[:-1]])
    base = np.repeat((counted - sure)[start], np.diff(np.r_[start, rb.size]))
    keep = counted - sure - base < need[rb]  # sure campaigns strictly before this pair
    return rb[keep], clause[keep]


def _decide_pruned(
    index: CampaignIndex, tx: Taxonomy, model: ClickModel, store: StateStore | None, reqs: Requests,
    clk: Clocks, tables: ClauseTables, limit: int, floor_cpm: float, first_words: int,
    state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """Any other model: each step scores its candidates; a request is done once its
    ``limit``-th best eCPM (:func:`_keep_best`) is strictly above the global bound of the
    positions after the step (``tables.ub_at``)."""
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    best = np.full((n_req, limit), -np.inf)  # each request's `limit` best eCPMs so far, in no order
    found: list[Found] = []
    last = np.full(n_req, -1, dtype=np.int64)  # the last campaign found (its clauses may straddle two steps)
    active = np.arange(n_req)
    days = _day_groups(clk.days)
    w, step = 0, first_words
    while active.size and w < index.n_words and tables.ub_at[w] >= floor_cpm:
        w1 = min(index.n_words, w + step)
        b, camp = _visit(index, tables, store, reqs, clk, days, state_rows, degraded, active, slice(w, w1))
        # a campaign's clauses may straddle two steps: one pair for it
        keep = camp != last[b]
        if b.size:
            ends = np.flatnonzero(np.r_[b[1:] != b[:-1], True])
            last[b[ends]] = camp[ends]
        b, camp = b[keep], camp[keep]
        pctr = pair_pctr(model, index, tx, reqs, b, camp)
        values = ecpm(index, camp, pctr)
        above = values >= floor_cpm
        found.append((b[above], camp[above], pctr[above], values[above]))
        kth = _keep_best(best, active, found[-1][0], found[-1][3])
        active = active[~(kth > tables.ub_at[w1])]
        w, step = w1, step * 2
    return _rank_found(found, best), degraded


def _decide_blocks(
    index: CampaignIndex, model: Any, store: StateStore | None, reqs: Requests, clk: Clocks,
    tables: ClauseTables, layout: Blocks, limit: int, floor_cpm: float, first_chunk: int,
    state_rows: np.ndarray | None,
) -> tuple[Ranked, np.ndarray]:
    """A model that splits its logit: the threshold algorithm over ``layout``'s blocks.

    Every request walks every block from its head, at its own pace. A block's bound at the
    request's next position there (:meth:`Blocks.bounds`) bounds all it has not visited in
    it; the request needs the block while that bound is at least the floor and not strictly
    below its ``limit``-th best eCPM so far (that never reverses: the bound only falls, the
    ``limit``-th best only rises), and is done when it needs no block.

    Each round gives every request a level, the higher of its ``limit``-th best so far and its
    highest bound over ``_SPREAD``, and visits, in each needed block whose bound reaches the
    level, the positions whose bound does (:meth:`Blocks.below`; at most ``first_chunk``,
    then twice the request's last chunk in that block; at least one campaign). The highest
    bounds go first, which raises the ``limit``-th best soonest: most requests visit two or
    three blocks of the thirteen, and once the ``limit``-th best is the level, the round
    visits all that is left. The words of all the chunks are matched as scattered (request,
    word) pairs (:class:`PairMatcher`), the candidates scored, and each request's ``limit``
    best eCPMs kept (:func:`_keep_best`) for the stop test."""
    n_req = len(reqs)
    degraded = np.zeros(n_req, dtype=bool)
    users = model.user_logits(reqs)
    scales = layout.scales(users)
    pm = PairMatcher(index, tables, reqs, clk)
    end = layout.start[1:]
    at = np.repeat(layout.start[None, :-1], n_req, axis=0)  # [B, J]: each request's next position per block
    size = np.full(at.shape, first_chunk, dtype=np.int64)
    bound = layout.bounds(at, scales)
    need = bound >= floor_cpm
    kth = np.full(n_req, -np.inf)
    best = np.full((n_req, limit), -np.inf)  # each request's `limit` best eCPMs so far, in no order
    found: list[Found] = []
    active = np.flatnonzero(need.any(axis=1))
    need, bound, kth = need[active], bound[active], kth[active]
    while active.size:
        top = np.max(np.where(need, bound, -np.inf), axis=1)
        level = np.maximum(kth, top / _SPREAD)
        vr, vj = np.nonzero(need & (bound >= level[:, None]))  # by request, then block: positions ascend
        vq = active[vr]
        p0 = at[vq, vj]
        upto = np.minimum(p0 + size[vq, vj], end[vj])
        scale = scales[vq, layout.scale_of[vj]]
        short = np.flatnonzero(layout.bound_at(upto, vj, scale) < level[vr])  # the chunk may stop sooner
        with np.errstate(divide="ignore"):
            upto[short] = np.maximum(p0[short] + 1, layout.below(vj[short], np.log(level[vr[short]]), scale[short]))
        p1 = layout.run_end[upto - 1]  # never splitting a campaign
        at[vq, vj] = p1
        size[vq, vj] *= 2
        b, camp = _visit_chunks(index, tables, pm, store, reqs, clk, state_rows, degraded, vq, p0, p1)
        pctr = model.predict_user_pairs(users, b, camp, index)
        values = ecpm(index, camp, pctr)
        above = values >= floor_cpm
        found.append((b[above], camp[above], pctr[above], values[above]))
        kth = _keep_best(best, active, found[-1][0], found[-1][3])
        bound[vr, vj] = layout.bound_at(p1, vj, scale)  # only the blocks visited moved on
        need = (bound >= floor_cpm) & ~(kth[:, None] > bound)
        going = np.any(need, axis=1)
        active, need, bound, kth = active[going], need[going], bound[going], kth[going]
    return _rank_found(found, best), degraded


def _rank_found(found: list[Found], best: np.ndarray) -> Ranked:
    """The answers among the ``found`` pairs, given each request's ``limit`` best eCPMs
    (``best``, :func:`_keep_best`): by request, eCPM descending, ties by campaign position,
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


def _keep_best(best: np.ndarray, active: np.ndarray, req: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Merge ``values`` (of requests ``req``, by request; all in ``active``) into ``best``
    (float64[B, limit], each request's best values in no order, ``-inf`` for none); returns
    float64[len(active)]: the ``limit``-th best of each active request (``-inf`` with fewer)."""
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


_SPREAD = 1.2  # a round goes down to the request's highest bound over this (or its limit-th best)


def _visit_chunks(
    index: CampaignIndex, tables: ClauseTables, pm: PairMatcher, store: StateStore | None, reqs: Requests,
    clk: Clocks, state_rows: np.ndarray | None, degraded: np.ndarray, req: np.ndarray, p0: np.ndarray, p1: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of request ``req[i]`` at positions ``p0[i]:p1[i]`` of ``tables`` (the
    chunks by request, then position; none splits a campaign), store checks passed:
    (int64[P] request, int64[P] campaign), by request then position, one pair per campaign.
    Sets ``degraded`` of the requests whose store checks degraded."""
    w0 = p0 // 64
    n = (p1 + 63) // 64 - w0  # words per chunk
    chunk = np.repeat(np.arange(p0.size), n)
    pw = w0[chunk] + np.arange(chunk.size) - np.repeat(np.cumsum(n) - n, n)
    bit0 = 64 * pw
    mask = _LOW[np.clip(p1[chunk] - bit0, 0, 64)] & ~_LOW[np.clip(p0[chunk] - bit0, 0, 64)]
    pr = req[chunk]
    words = pm.words(pr, pw) & mask
    k, bit = _bit_pairs(words[:, None])
    rb, position = pr[k], pw[k] * 64 + bit
    ok = pm.tag_checks(rb, position)
    rb, clause = rb[ok], tables.perm[position[ok]]
    if store is not None and rb.size and index.needs_store[clause].any():
        ok, deg = store_checks(index, reqs, rb, clause, store, clk, state_rows)
        degraded |= deg
        rb, clause = rb[ok], clause[ok]
    camp = index.owner[clause].astype(np.int64)
    first = np.ones(rb.size, dtype=bool)  # a campaign's clauses are adjacent in the tables' order
    first[1:] = (rb[1:] != rb[:-1]) | (camp[1:] != camp[:-1])
    return rb[first], camp[first]


def _visit(
    index: CampaignIndex, tables: ClauseTables, store: StateStore | None, reqs: Requests, clk: Clocks,
    days: tuple[np.ndarray, np.ndarray], state_rows: np.ndarray | None, degraded: np.ndarray,
    rq: np.ndarray, cols: slice,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of requests ``rq`` (block positions, ascending) in the words ``cols`` of
    ``tables`` (:func:`match_words`), store checks passed: (int64[P] request, int64[P]
    campaign), by request then position, one pair per campaign (a campaign cut at the ends
    may come again in the next words). Sets ``degraded`` of the requests whose store checks
    degraded."""
    sub = reqs.take(rq)
    sub_clk = Clocks(clk.slots[rq], clk.days[rq], clk.day_fraction[rq])
    words = match_words(index, tables, sub, sub_clk, cols, (days[0], days[1][rq]))
    rb, bit = _bit_pairs(words)
    clause = tables.perm[cols.start * 64 + bit]
    if store is not None and rb.size and index.needs_store[clause].any():
        ok, deg = store_checks(index, sub, rb, clause, store, sub_clk, None if state_rows is None else state_rows[rq])
        degraded[rq] |= deg
        rb, clause = rb[ok], clause[ok]
    camp = index.owner[clause].astype(np.int64)
    first = np.ones(rb.size, dtype=bool)  # a campaign's clauses are adjacent in the tables' order
    first[1:] = (rb[1:] != rb[:-1]) | (camp[1:] != camp[:-1])
    return rq[rb[first]], camp[first]


_LOW = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)  # _LOW[k]: the k low bits
