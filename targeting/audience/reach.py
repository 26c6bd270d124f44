"""Reach over an :class:`AudienceIndex`: exact users, breakdowns, funnel, overlap, impressions.

Semantics are the campaign compiler's: a user is in the audience iff some clause of
``spec.clauses(taxonomy)`` matches their geo leaf, gender, age, tags and (for
retargeting) the advertiser's events in the store. Time and scene constrain
*impressions*, not users: a profile has neither, so both are ignored when counting
users (a user who would match in some scene at some time is counted), and time
weights ``est_daily_impressions`` only.

``est_daily_impressions`` = Σ ``daily_impressions`` of the matched users (each rounded
to a whole number of impressions; unknown = the population's mean; above
:data:`EXACT_ROWS` matched rows in a shard that shard's sum is estimated from a fixed
1/8 sample of its rows) × the share of a week's traffic that falls in the spec's
half-hour slots, by the hour-of-week curve :data:`TRAFFIC` (China mobile traffic,
Asia/Shanghai local time: a night trough at 4-5h, a lunch bump, the daily peak at
20-22h; weekends rise later and carry 10% more traffic per day).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pyroaring import BitMap

from ..errors import TargetingError, Unavailable
from ..spec import Clause, Rule, Spec, parse_spec
from ..stores import StoreUnavailable
from ..taxonomy import AGE_DOMAIN, GENDERS, SLOTS
from .index import N_GENDER, AudienceIndex, Selection, bitmap_of

DAY = 86400.0
EXACT_ROWS = 50_000  # per shard: above this, est_daily_impressions is computed from a 1/8 sample
_WEEKDAY = [3.0, 1.8, 1.1, 0.8, 0.7, 0.9, 1.8, 3.4, 4.6, 4.9, 5.0, 5.3,
            6.0, 5.4, 4.9, 4.9, 5.0, 5.2, 5.4, 6.0, 6.8, 7.2, 6.3, 4.6]
_WEEKEND = [3.6, 2.4, 1.5, 1.0, 0.8, 0.8, 1.2, 2.2, 3.4, 4.5, 5.2, 5.6,
            5.9, 5.8, 5.6, 5.5, 5.5, 5.5, 5.6, 6.1, 6.7, 7.0, 6.4, 4.9]


def _traffic() -> np.ndarray:
    day = [np.repeat(np.array(_WEEKDAY) / 2, 2)] * 5 + [np.repeat(np.array(_WEEKEND) * 1.1 / 2, 2)] * 2
    w = np.concatenate(day)
    return w / w.sum()


TRAFFIC: np.ndarray = _traffic()  # float64[336]: share of weekly impressions per half-hour slot
BREAKDOWNS = ("province", "city", "gender", "age", "tag")
AGE_BANDS = (("<18", 0, 17), ("18-24", 18, 24), ("25-34", 25, 34), ("35-44", 35, 44),
             ("45-54", 45, 54), ("55-64", 55, 64), ("65+", 65, 200))
FUNNEL_STEPS = (
    ("geo", ("geo_include", "geo_exclude")),
    ("gender", ("gender",)),
    ("age", ("age",)),
    ("tags", ("tags_any", "tags_all", "tags_none")),
    ("retargeting", ("rt_any", "rt_none")),
    ("any_of", ("any_of",)),
)


def slot_share(slots: frozenset[int] | None) -> float:
    """Share of a week's traffic in ``slots`` (None = all of it)."""
    if slots is None:
        return 1.0
    return float(TRAFFIC[sorted(s for s in slots if 0 <= s < SLOTS)].sum())


class Evaluator:
    """Evaluates specs over one index for one call (retargeting sets fetched once)."""

    def __init__(self, index: AudienceIndex, *, advertiser: str | None, store: Any, now: float) -> None:
        self.index = index
        self.advertiser = advertiser
        self.store = store
        self.now = now
        self.rt: dict[Rule, list[BitMap]] = {}

    def _retargeting(self, rules: Iterable[Rule]) -> None:
        missing = [r for r in rules if r not in self.rt]
        if not missing:
            return
        if self.advertiser is None:
            raise TargetingError("retargeting in reach or export needs the advertiser whose events to use",
                                 path="advertiser", code="advertiser_required")
        fetch = getattr(self.store, "users_with_events", None)
        if fetch is None:
            raise Unavailable("the state store cannot list users by event, so retargeting audiences "
                              "cannot be counted with it", path="targeting.retargeting")
        for event, days in missing:
            try:
                users = fetch(self.advertiser, {event}, self.now - days * DAY)
            except StoreUnavailable as e:
                raise Unavailable(f"state store unavailable, retargeting audiences cannot be counted: {e}",
                                  path="targeting.retargeting") from e
            rows = self.index.locate(sorted(users))
            self.rt[(event, days)] = [bitmap_of(r) for r in rows]

    def clauses(self, spec: Spec) -> tuple[Clause, ...]:
        cls = self.index.clauses_of(spec)
        self._retargeting({r for c in cls for rules in c.rt_any for r in rules} | {r for c in cls for r in c.rt_none})
        return cls

    def select(self, clauses: Sequence[Clause]) -> list[Selection]:
        """Per shard, the rows matching any of ``clauses``."""
        out = []
        for k in range(len(self.index.shards)):
            parts = []
            for c in clauses:
                parts.append(self.index.rows_for(c, self.index.cell_runs(c), k, self.rt))
            if not parts:
                out.append(Selection(np.zeros(0, np.int64), np.zeros(0, np.int64), BitMap()))
            elif len(parts) == 1:
                out.append(parts[0])
            else:
                out.append(Selection(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                     BitMap.union(*(p.bitmap() for p in parts))))
        return out

    def spec_rows(self, spec: Spec) -> list[Selection]:
        return self.select(self.clauses(spec))

    def count(self, spec: Spec) -> int:
        return sum(s.count() for s in self.spec_rows(spec))

    # ------------------------------------------------------------ measures
    def daily_impressions(self, sels: Sequence[Selection]) -> float:
        """Σ daily impressions over the selections: exact for whole cells and for up to
        :data:`EXACT_ROWS` rows per shard; above that, from the shard's fixed 1/8 sample
        of rows, scaled up (relative error ~ 1/sqrt(rows/8): about 1% at 50k rows)."""
        total = 0.0
        for k, sel in enumerate(sels):
            s = self.index.shards[k]
            if sel.bits is None:
                total += float(s.cell_di[_cells_in(s.offsets, sel)].sum())
                continue
            x = sel.bits
            n = len(x)
            if n == 0:
                continue
            scale = 1.0
            if n > EXACT_ROWS:
                xs = x & s.sample
                if len(xs):
                    scale, x = n / len(xs), xs
            total += scale * float(sum(x.intersection_cardinality(bits) << bit for bit, bits in enumerate(s.di)))
        return total

    def est_daily_impressions(self, clauses: Sequence[Clause], sels: Sequence[Selection]) -> float:
        groups: dict[frozenset[int] | None, list[Clause]] = {}
        for c in clauses:
            groups.setdefault(c.slots, []).append(c)
        if len(groups) <= 1:
            slots = next(iter(groups)) if groups else None
            return slot_share(slots) * self.daily_impressions(sels)
        # clauses with different time slots: a slot counts a user's traffic when some
        # clause that matches the user covers it; group slots by the set of covering groups
        keys = list(groups)
        classes: dict[frozenset[int], list[int]] = {}
        for slot in range(SLOTS):
            cover = frozenset(i for i, k in enumerate(keys) if k is None or slot in k)
            if cover:
                classes.setdefault(cover, []).append(slot)
        total = 0.0
        for cover, in_class in classes.items():
            cls = [c for i in sorted(cover) for c in groups[keys[i]]]
            total += float(TRAFFIC[in_class].sum()) * self.daily_impressions(self.select(cls))
        return total

    def breakdown(self, dims: Sequence[str], sels: Sequence[Selection]) -> dict[str, dict[str, int]]:
        tx = self.index.taxonomy
        out: dict[str, dict[str, int]] = {}
        cell_dims = [d for d in dims if d != "tag"]
        if cell_dims:
            cells = np.zeros(tx.geo_domain * N_GENDER * AGE_DOMAIN, dtype=np.int64)
            for k, sel in enumerate(sels):
                s = self.index.shards[k]
                if sel.bits is None:
                    inside = _cells_in(s.offsets, sel)
                    cells += np.where(inside, np.diff(s.offsets), 0)
                elif len(sel.bits):
                    cells += np.bincount(s.cell_of(sel.rows()), minlength=len(cells))
            cube = cells.reshape(tx.geo_domain, N_GENDER, AGE_DOMAIN)
            by_leaf = cube.sum(axis=(1, 2))
            for d in cell_dims:
                if d in ("province", "city"):  # a geo leaf is (province, city or 0)
                    part = 0 if d == "province" else 1
                    res: dict[str, int] = {}
                    for leaf, n in zip(tx.geo_leaves, by_leaf.tolist()):
                        if n:
                            key = str(leaf[part]) if leaf[part] else "unknown"
                            res[key] = res.get(key, 0) + n
                    out[d] = res
                elif d == "gender":
                    g = cube.sum(axis=(0, 2)).tolist()
                    out[d] = {**{name: g[i + 1] for i, name in enumerate(GENDERS)}, "unknown": g[0]}
                elif d == "age":
                    a = cube.sum(axis=(0, 1))
                    res = {label: int(a[lo + 1: min(hi, AGE_DOMAIN - 2) + 2].sum()) for label, lo, hi in AGE_BANDS}
                    res["unknown"] = int(a[0])
                    out[d] = res
        if "tag" in dims:
            counts = np.zeros(len(tx.tag_ids), dtype=np.int64)
            for k, sel in enumerate(sels):
                s = self.index.shards[k]
                x = sel.bitmap()
                if len(x):
                    counts += np.array([x.intersection_cardinality(t) for t in s.tags], dtype=np.int64)
            out["tag"] = {t: int(n) for t, n in zip(tx.tag_ids, counts.tolist()) if n}
        return {d: out[d] for d in dims}

    def breakdown_names(self, breakdown: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
        """``{dim: {value: name}}`` for the coded values of ``breakdown``: places by adcode
        (``"440000": "广东省"``, ``"440300": "深圳市"``) and tags (``"investor": "投资理财"``);
        gender, age bands and ``unknown`` name themselves."""
        tx = self.index.taxonomy
        names: dict[str, dict[str, str]] = {}
        for dim, cells in breakdown.items():
            if dim in ("province", "city"):
                names[dim] = {v: tx.places[int(v)].name for v in cells if v.isdigit() and int(v) in tx.places}
            elif dim == "tag":
                names[dim] = {v: tx.tags[v] for v in cells if v in tx.tags}
        return names

    def funnel(self, spec: Spec) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = [{"step": "population", "users": self.index.population}]
        fields: dict[str, Any] = {}
        prev = self.index.population
        for name, attrs in FUNNEL_STEPS:
            present = {a: getattr(spec, a) for a in attrs if getattr(spec, a) != getattr(Spec(), a)}
            if not present:
                continue
            fields.update(present)
            n = self.count(dataclasses.replace(Spec(), **fields))
            steps.append({"step": name, "users": n, "removed": prev - n})
            prev = n
        return steps

    def key(self, sels: Sequence[Selection]) -> str:
        """A digest of the exact set of matched users (independent of how the spec is written)."""
        h = hashlib.blake2b(digest_size=16)
        for k, sel in enumerate(sels):
            x = sel.bitmap().copy() if sel.bits is not None else sel.bitmap()
            x.run_optimize()
            h.update(k.to_bytes(4, "little"))
            h.update(x.serialize())
        return h.hexdigest()


def _cells_in(offsets: np.ndarray, sel: Selection) -> np.ndarray:
    """bool[n_cells]: cells whose (non-empty) row range lies inside the selection's ranges."""
    lo = np.asarray(offsets[:-1])
    hi = np.asarray(offsets[1:])
    if len(sel.starts) == 0:
        return np.zeros(len(lo), dtype=bool)
    i = np.searchsorted(sel.starts, lo, side="right") - 1
    return (i >= 0) & (hi > lo) & (lo < sel.ends[np.maximum(i, 0)])


def reach(index: AudienceIndex, spec: Spec, *, breakdown: Sequence[str] = (), advertiser: str | None = None,
          store: Any = None, now: float = 0.0, funnel: bool = False, overlap: Any = None,
          audience_key: bool | None = None) -> dict[str, Any]:
    """The operator view: exact counts. See the module docstring for the semantics.

    ``overlap``: a second spec (raw or parsed) → ``overlap: {users, both, either}``;
    ``funnel``: users left after each top-level dimension in order;
    ``audience_key``: a digest of the matched set for :func:`privacy.advertiser_view`
    (computed by default when ``advertiser`` is given).

    Breakdown cells are keyed by code (adcode, tag id); with a ``province``, ``city``
    or ``tag`` breakdown the answer also has ``breakdown_names``, the same keys mapped
    to their names: ``{"province": {"440000": "广东省"}}``.
    """
    if isinstance(breakdown, str) or not isinstance(breakdown, Sequence):
        raise TargetingError("breakdown is a list of dimensions", path="breakdown")
    for i, d in enumerate(breakdown):
        if d not in BREAKDOWNS:
            raise TargetingError(f"unknown breakdown dimension {d!r}; known: {', '.join(BREAKDOWNS)}",
                                 path=f"breakdown[{i}]", code="unknown_dimension")
    ev = Evaluator(index, advertiser=advertiser, store=store, now=now)
    other = None
    if overlap is not None:
        other = overlap if isinstance(overlap, Spec) else parse_spec(
            overlap, index.taxonomy, advertiser=advertiser, path="overlap")
    clauses = ev.clauses(spec)
    sels = ev.select(clauses)
    users = sum(s.count() for s in sels)
    cells = ev.breakdown(list(dict.fromkeys(breakdown)), sels)
    answer: dict[str, Any] = {
        "users": users,
        "below_threshold": False,
        "est_daily_impressions": round(ev.est_daily_impressions(clauses, sels), 1),
        "breakdown": cells,
        "population": index.population,
        "funnel": ev.funnel(spec) if funnel else None,
    }
    names = ev.breakdown_names(cells)
    if names:
        answer["breakdown_names"] = names
    notes = []
    if _uses(spec, "scene_include") or _uses(spec, "scene_exclude"):
        notes.append("scene constrains impressions, not users: ignored in user counts")
    if spec.uses_time:
        notes.append("time constrains impressions, not users: it weights est_daily_impressions only")
    if notes:
        answer["notes"] = notes
    if other is not None:
        osels = ev.spec_rows(other)
        both = sum(a.bitmap().intersection_cardinality(b.bitmap()) for a, b in zip(sels, osels))
        n_other = sum(s.count() for s in osels)
        answer["overlap"] = {"users": n_other, "both": both, "either": users + n_other - both}
    if audience_key if audience_key is not None else advertiser is not None:
        answer["audience_key"] = ev.key(sels)
    return answer


def _uses(spec: Spec, attr: str) -> bool:
    default = getattr(Spec(), attr)
    return getattr(spec, attr) != default or any(_uses(s, attr) for s in spec.any_of)
