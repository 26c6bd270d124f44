"""Request → eligible clauses by bitwise operations over a :class:`CampaignIndex`.

Pure: the time of the impression comes in as a :class:`Moment`; store-backed
checks (retargeting, caps, budgets) happen afterwards, in the engine, on the
few candidates left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from . import bitset
from .compiler import CampaignIndex
from .localtime import local_datetime, local_minute
from .state import WINDOWS, window_bucket


@dataclass(frozen=True, slots=True)
class Moment:
    """A minute seen from each of the index's zones (aligned with ``index.zones``)."""

    ts: float  # the minute's first second (epoch)
    slots: tuple[int, ...]  # half-hour-of-week slot per zone
    days: tuple[int, ...]  # local date ordinal per zone
    day_fraction: tuple[float, ...]  # share of the local day elapsed, per zone
    labels: tuple[dict[str, str], ...] = ()  # per zone: window -> label (targeting.state.window_bucket)
    day_labels: tuple[str, ...] = ()  # per zone: labels[z]["day"]


def moment(zones: tuple[str, ...], ts: float) -> Moment:
    """The minute of ``ts`` in each zone: every targeting and state rule works on minutes
    or coarser, so one shared object per minute (cached) serves every request in it."""
    return _moment_minute(zones, int(ts // 60))


@lru_cache(maxsize=4096)
def _moment_minute(zones: tuple[str, ...], minute: int) -> Moment:
    block, into = divmod(minute, 15)
    parts = [_quarter(z, block) for z in zones]
    return Moment(
        minute * 60.0,
        tuple(q[0] for q in parts),
        tuple(q[1] for q in parts),
        tuple((q[2] + into) / 1440 for q in parts),
        tuple(q[3] for q in parts),
        tuple(q[3]["day"] for q in parts),
    )


@lru_cache(maxsize=4096)
def _quarter(zone: str, block: int) -> tuple[int, int, int, dict[str, str]]:
    """(slot, day ordinal, local minute of the day, window labels) at the start of
    the UTC quarter-hour ``block`` in ``zone``. Every zone's UTC offset is a multiple of 15
    minutes, so the local hour, date, half-hour slot and windows hold for the whole quarter."""
    t = local_datetime(local_minute(zone, block * 15))
    labels = {w: window_bucket(w, t) for w in WINDOWS}
    return t.weekday() * 48 + t.hour * 2 + t.minute // 30, t.date().toordinal(), t.hour * 60 + t.minute, labels


class Point(NamedTuple):
    """A request's attributes as domain indices (see :mod:`targeting.taxonomy`).
    A named tuple: one is built per decision, and a tuple is built fastest."""

    geo: int
    gender: int
    age: int
    scene: int
    tags: tuple[int, ...]  # sorted tag indices


def match(index: CampaignIndex, p: Point, m: Moment | None) -> np.ndarray:
    """uint64[index.n_words]: clauses whose targeting (not retargeting) and flight accept ``p`` at ``m``.

    With ``m`` None, time and flight dates are ignored (reach semantics).
    """
    rows = index.rows
    pos = [index.geo_base + p.geo, index.gender_base + p.gender, index.age_base + p.age, index.scene_base + p.scene]
    groups = [0, 1, 2, 3]
    if m is not None:
        groups.append(len(pos))
        pos.extend(b + s for b, s in zip(index.time_base, m.slots))
    for base in index.any_base:
        groups.append(len(pos))
        pos.extend(base + t for t in p.tags)
        pos.append(base + len(index.tag_index))
    neg = negative_rows(index, p.tags)
    if neg:  # one gather for both sides; the negative rows form the last group
        groups.append(len(pos))
        pos.extend(neg)
        ored = np.bitwise_or.reduceat(rows[pos], groups, axis=0)
        words = np.bitwise_and.reduce(ored[:-1], axis=0)
        words &= ~ored[-1]
    else:
        words = np.bitwise_and.reduce(np.bitwise_or.reduceat(rows[pos], groups, axis=0), axis=0)
    if m is not None:
        words &= bitset.pack(index.live(m.days)[index.owner])
    return words


def negative_rows(index: CampaignIndex, tags: tuple[int, ...]) -> list[int]:
    """The ``all``/``none`` tag rules, as rows of the index: a clause fails when it is in the
    ``all`` row of a tag the request lacks or the ``none`` row of a tag it has.

    (The same rule per clause, for scattered (request, clause) pairs: :func:`tag_rules_hold`;
    decide's fast path ORs these rows as Python integers, ``targeting.ordered``.)"""
    out = [index.all_base + t for t in index.all_tags_list if t not in tags]
    if index.none_base < index.rows.shape[0]:
        out.extend([index.none_base + t for t in tags])
    return out


def tag_rules_hold(need: np.ndarray, avoid: np.ndarray, have: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bool[P]: :func:`negative_rows`' rule for pairs: whether requests with tags ``have``
    (uint64[P, L], a tag mask per request) pass the ``all`` and ``none`` rules of the clauses
    at ``position`` (int[P]), given each clause's masks ``need`` and ``avoid`` (uint64[m, L],
    ``targeting.layout.Layout.tag_masks``): one bitmask per clause, not a row per tag."""
    ok = np.ones(position.size, dtype=bool)
    for k in range(need.shape[1]):
        got = have[:, k]
        ok &= ((need[position, k] & ~got) | (avoid[position, k] & got)) == 0
    return ok


def first_failures(index: CampaignIndex, p: Point, m: Moment) -> dict[int, str]:
    """For each campaign rejected by targeting: the first dimension (in
    the order status, flight, geo, time, gender, age, tags, scene) that rejected it. Keys are campaign positions.

    For a campaign with several clauses, the clause that got furthest decides.
    Slower than :func:`match`; used only for ``explain``.
    """
    rows = index.rows
    n_tags = len(index.tag_index)
    checks: list[tuple[str, np.ndarray]] = [
        ("status", bitset.pack(index.active[index.owner])),
        ("flight", bitset.pack(index.in_flight(m.days)[index.owner])),
        ("geo", rows[index.geo_base + p.geo]),
        ("time", np.bitwise_or.reduce(rows[[b + s for b, s in zip(index.time_base, m.slots)]], axis=0)),
        ("gender", rows[index.gender_base + p.gender]),
        ("age", rows[index.age_base + p.age]),
    ]
    tag_ok = np.full(index.n_words, ~np.uint64(0), dtype=np.uint64)
    for base in index.any_base:
        tag_ok &= np.bitwise_or.reduce(rows[[base + t for t in p.tags] + [base + n_tags]], axis=0)
    neg = negative_rows(index, p.tags)
    if neg:
        tag_ok &= ~np.bitwise_or.reduce(rows[neg], axis=0)
    checks.append(("tags", tag_ok))
    checks.append(("scene", rows[index.scene_base + p.scene]))

    m_clauses = index.n_clauses
    depth = np.full(m_clauses, len(checks), dtype=np.int16)  # index of first failing check
    alive = np.ones(m_clauses, dtype=bool)
    for i, (_, words) in enumerate(checks):
        ok = _unpack(words, m_clauses)
        newly = alive & ~ok
        depth[newly] = i
        alive &= ok
    best = np.full(index.n_campaigns, -1, dtype=np.int16)
    np.maximum.at(best, index.owner, depth)
    return {int(c): checks[int(d)][0] for c, d in enumerate(best) if d < len(checks)}


def _unpack(words: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:n].astype(bool)


def sorted_tag_indices(tags: Iterable[str] | None, tag_index: dict[str, int]) -> tuple[int, ...]:
    return tuple(sorted(tag_index[t] for t in tags)) if tags else ()


__all__ = ["Moment", "Point", "first_failures", "match", "moment", "negative_rows", "sorted_tag_indices",
           "tag_rules_hold"]
