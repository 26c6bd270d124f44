"""Matching a block of ``B`` requests at once, as array operations over a
:class:`targeting.layout.Layout`'s clause rows.

The same rule as :func:`targeting.matcher.match` (a test checks the batch scorer against
``Engine.decide``), on whole arrays of :class:`targeting.batchrequests.Requests`:
eligibility is a gather of the layout's rows for ``B × k`` row numbers reduced along the
row axis, over the few words a ranking step asks for (:func:`match_words`) or over
scattered (request, word) pairs (:class:`PairMatcher`). Both leave the ``all``/``none``
tag rules to :func:`targeting.matcher.tag_rules_hold` on the bits found (one mask per
clause, :attr:`Layout.tag_masks`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import bitset
from .batchrequests import Clocks, Requests
from .layout import Layout
from .matcher import tag_rules_hold


def match_words(layout: Layout, reqs: Requests, clk: Clocks | None, cols: slice,
                days: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """uint64[B, len(cols)]: the words ``cols`` (a range) of the clauses whose targeting and
    flight accept each request, in ``layout``'s order, but for the ``all``/``none`` tag rules
    (:func:`tag_checks`). With ``clk`` None, time and flight dates are ignored (reach
    semantics). ``days``: :func:`day_groups` of ``clk.days`` when the caller has it."""
    index = layout.index
    zero = layout.rows.shape[0] - 1
    n_tags = len(index.tag_index)
    # the few words asked for, for every row: later gathers copy only these
    full = (cols.start, cols.stop) == (0, index.n_words)
    rows = layout.rows if full else np.ascontiguousarray(layout.rows[:, cols])
    words = rows[index.geo_base + reqs.geo]
    words &= rows[index.gender_base + reqs.gender]
    words &= rows[index.age_base + reqs.age]
    words &= rows[index.scene_base + reqs.scene]
    if clk is not None:
        t = rows[index.time_base[0] + clk.slots[:, 0]]
        for z in range(1, len(index.zones)):
            t |= rows[index.time_base[z] + clk.slots[:, z]]
        words &= t
    tag_cols = np.ascontiguousarray(reqs.tags.T)  # one column of tags at a time: contiguous gathers
    for base in index.any_base:
        ored = np.repeat(rows[base + n_tags][None, :], len(reqs), axis=0)
        _or_rows(ored, rows, np.where(tag_cols >= 0, base + tag_cols, zero), zero)
        words &= ored
    if clk is not None:
        uniq, inv = days if days is not None else day_groups(clk.days)
        lives = np.stack([layout.live(tuple(int(d) for d in u))[cols] for u in uniq])
        words &= lives[inv.reshape(-1)]
    return words


def tag_checks(layout: Layout, have: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bool[P]: whether requests with tag masks ``have`` (uint64[P, L], :func:`request_tag_masks`)
    pass the ``all``/``none`` tag rules of the clauses at ``position`` (int[P]) of ``layout``."""
    if not layout.neg_words.size:
        return np.ones(position.size, dtype=bool)
    need, avoid = layout.tag_masks
    return tag_rules_hold(need, avoid, have, position)


def matched_pairs(layout: Layout, reqs: Requests, clk: Clocks | None) -> tuple[np.ndarray, np.ndarray]:
    """(int64[P] request, int64[P] clause): every clause of ``layout`` whose targeting and flight
    accept each request (:func:`targeting.matcher.match`, all rules), by request then position."""
    words = match_words(layout, reqs, clk, slice(0, layout.index.n_words))
    rb, position = bitset.bit_pairs(words)
    ok = tag_checks(layout, request_tag_masks(reqs, len(layout.index.tag_index))[rb], position)
    return rb[ok], layout.perm[position[ok]]


def campaign_pairs(layout: Layout, rb: np.ndarray, clause: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[P] request, int64[P] campaign): (request, clause) pairs (by request, then position
    in ``layout``: a campaign's clauses adjacent) reduced to one pair per campaign."""
    camp = layout.index.owner[clause].astype(np.int64)
    first = np.ones(rb.size, dtype=bool)
    first[1:] = (rb[1:] != rb[:-1]) | (camp[1:] != camp[:-1])
    return rb[first], camp[first]


class PairMatcher:
    """:func:`match_words` for scattered (request, word) pairs of one block of requests: each
    request's rows once as offsets into the layout, then per pair just the words asked for."""

    def __init__(self, layout: Layout, reqs: Requests, clk: Clocks):
        index = layout.index
        self.layout = layout
        n_words = layout.rows.shape[1]
        zero = layout.rows.shape[0] - 1
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
        uniq, inv = day_groups(clk.days)
        self._lives = np.stack([layout.live(tuple(int(d) for d in u)) for u in uniq]).reshape(-1)
        self._day = inv.astype(np.int64) * n_words
        self.have = request_tag_masks(reqs, n_tags)

    def words(self, pr: np.ndarray, pw: np.ndarray) -> np.ndarray:
        """uint64[P]: word ``pw[i]`` of :func:`match_words` for request ``pr[i]``."""
        flat = self.layout.rows.reshape(-1)
        at = pw[:, None]
        words = np.bitwise_and.reduce(flat[self._and[pr] + at], axis=1)
        words &= np.bitwise_or.reduce(flat[self._time[pr] + at], axis=1)
        words &= self._lives[self._day[pr] + pw]
        for rows in self._any:
            words &= np.bitwise_or.reduce(flat[rows[pr] + at], axis=1)
        return words


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


def day_groups(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


__all__ = ["PairMatcher", "campaign_pairs", "day_groups", "match_words", "matched_pairs", "request_tag_masks",
           "tag_checks"]
