"""Compile validated campaigns into an immutable :class:`CampaignIndex` (pure, no I/O).

Bitsets run over *clauses* (a campaign's spec expanded by ``any_of``); clause
``j`` belongs to campaign ``owner[j]``. Every targeting dimension becomes rows
of one matrix ``rows: uint64[n_rows, n_words]``:

- single-valued dimensions (geo leaf, gender, age, scene): one row per domain
  value, bit set when the clause allows that value (unconstrained clauses
  allow all values, including 0 = unknown);
- time: one block of 336 half-hour rows per time zone, a clause's bits only in
  its campaign's zone block;
- tags: ``any`` blocks (one row per tag plus a last "unconstrained" row), an
  ``all`` block (clauses that require the tag) and a ``none`` block.

The matcher then needs one gather and a couple of reductions per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import bitset
from .rules import Campaign
from .spec import Clause
from .state import DAY, WINDOWS, cap_key, spend_key
from .taxonomy import AGE_DOMAIN, SLOTS, Taxonomy

Window = tuple[tuple[str, str], float]  # ((advertiser, event), window in seconds)
RtRules = tuple[tuple[tuple[Window, ...], ...], tuple[Window, ...]]  # (any lists, none list)


@dataclass(frozen=True, eq=False)
class CampaignIndex:
    """Campaign-side index. Arrays are indexed by campaign (``n``) or clause (``m``)."""

    version: str
    campaigns: tuple[Campaign, ...]  # sorted by id: index order breaks eCPM ties
    ids: tuple[str, ...]
    position: dict[str, int]
    owner: np.ndarray  # int32[m]: campaign of each clause
    n_words: int  # words per clause bitset
    rows: np.ndarray  # uint64[n_rows, n_words]
    geo_base: int
    gender_base: int
    age_base: int
    scene_base: int
    time_base: tuple[int, ...]  # per zone in ``zones``
    zones: tuple[str, ...]
    zone_of: np.ndarray  # int16[n]: index into ``zones``
    any_base: tuple[int, ...]  # per any-slot; row any_base[k] + n_tags is "unconstrained"
    all_base: int
    none_base: int
    all_tags_used: np.ndarray  # int32[]: tag indices that appear in some ``all``
    all_tags_list: tuple[int, ...]  # the same, as Python ints (the matcher's hot loop)
    tag_index: dict[str, int]
    # campaign-level arrays
    active: np.ndarray  # bool[n]: status == active
    start_day: np.ndarray  # int32[n]: proleptic ordinal of start (0 = open)
    end_day: np.ndarray  # int32[n]: ordinal of end (2**31-1 = open)
    bid: np.ndarray  # float64[n]
    is_cpc: np.ndarray  # bool[n]
    category: np.ndarray  # int16[n]: index into taxonomy categories
    prior_ctr: np.ndarray  # float64[n]
    needs_store: np.ndarray  # bool[m]: clause needs retargeting, cap or budget state
    store_words: np.ndarray  # uint64[n_words]: bitset of ``needs_store`` clauses
    needs_user: np.ndarray  # bool[n]: retargeting or a frequency cap (per-user state)
    first_clause: np.ndarray  # int32[n]: index of the campaign's first clause (clauses are contiguous)
    budget: np.ndarray  # float64[n]: daily budget, nan = none
    budgeted: np.ndarray  # int64[]: positions of campaigns with a daily budget
    shown: tuple[tuple[str, str, str, float], ...]  # (id, advertiser, bid type, bid) per campaign, for answers
    # per campaign: (advertiser, uses retargeting, cap window or None, zone, cap key prefix, cap impressions)
    state_meta: tuple[tuple[str, bool, str | None, int, str, float], ...]
    rt_rules: tuple[RtRules | None, ...]  # per clause: its retargeting rules keyed as the store answers, or None
    advertisers: frozenset[str]  # every advertiser with a campaign (events for others are refused)
    longest_window_days: int  # longest retargeting ``within_days`` in any clause, 0 if none
    state: StateArrays  # the same per-campaign state metadata as arrays (the batch scorer's checks)

    @property
    def n_campaigns(self) -> int:
        return len(self.campaigns)

    @property
    def n_clauses(self) -> int:
        return int(self.owner.size)

    def live(self, days: tuple[int, ...]) -> np.ndarray:
        """bool[n]: campaigns that are active and in flight (the one live-campaign test)."""
        return self.active & self.in_flight(days)

    def in_flight(self, days: tuple[int, ...]) -> np.ndarray:
        """bool[n]: campaigns whose start..end dates hold the local date, ``days[z]`` being its
        ordinal in zone ``zones[z]`` (each campaign's own zone)."""
        today = np.asarray(days, dtype=np.int32)[self.zone_of]
        return (self.start_day <= today) & (today <= self.end_day)


@dataclass(frozen=True)
class StateArrays:
    """What the store checks need, as arrays over campaigns (``n``) or clauses (``m``)."""

    cap_n: np.ndarray  # float64[n]: impressions allowed per window, inf = no cap
    cap_per: np.ndarray  # int8[n]: index into targeting.state.WINDOWS, -1 = no cap
    cap_prefix: np.ndarray  # object[n]: "cap:<id>:"
    spend_prefix: np.ndarray  # object[n]: "spend:<id>:"
    advertiser: np.ndarray  # int32[n]: index into ``advertisers``
    advertisers: tuple[str, ...]
    retargeting: np.ndarray  # bool[n]: the campaign's spec uses retargeting
    clause_rt: np.ndarray  # bool[m]: the clause has retargeting rules
    clause_rt_any: np.ndarray  # bool[m]: ... and some of them require an event
    clause_rt_keys: tuple[frozenset[tuple[str, str]], ...]  # per clause: the (advertiser, event) its rules name
    sure: np.ndarray  # bool[n]: no clause of the campaign needs state: it passes every store check


def _state_arrays(cs: tuple[Campaign, ...], clauses: list[Clause], rt_rules: tuple[RtRules | None, ...],
                  needs: np.ndarray, owner: np.ndarray) -> StateArrays:
    advs = tuple(sorted({c.advertiser for c in cs}))
    adv_pos = {a: i for i, a in enumerate(advs)}
    capped = [c.cap_impressions is not None and c.cap_per is not None for c in cs]
    return StateArrays(
        cap_n=np.array([c.cap_impressions if k else np.inf for c, k in zip(cs, capped)], dtype=np.float64),
        cap_per=np.array([WINDOWS.index(c.cap_per) if k and c.cap_per else -1 for c, k in zip(cs, capped)],
                         dtype=np.int8),
        cap_prefix=np.array([cap_key(c.id, "") for c in cs], dtype=object),
        spend_prefix=np.array([spend_key(c.id, "") for c in cs], dtype=object),
        advertiser=np.array([adv_pos[c.advertiser] for c in cs], dtype=np.int32),
        advertisers=advs,
        retargeting=np.array([c.spec.uses_retargeting for c in cs], dtype=bool),
        clause_rt=np.array([bool(cl.rt_any or cl.rt_none) for cl in clauses], dtype=bool),
        clause_rt_any=np.array([bool(cl.rt_any) for cl in clauses], dtype=bool),
        clause_rt_keys=tuple(_rule_keys(r) for r in rt_rules),
        sure=~np.isin(np.arange(len(cs)), owner[needs]),
    )


def _rule_keys(rules: RtRules | None) -> frozenset[tuple[str, str]]:
    """The store keys (advertiser, event) that retargeting rules read."""
    if rules is None:
        return frozenset()
    want, avoid = rules
    return frozenset([key for options in want for key, _ in options] + [key for key, _ in avoid])


def compile_campaigns(campaigns: Sequence[Campaign], taxonomy: Taxonomy, version: str) -> CampaignIndex:
    """Build the index. Campaigns are re-sorted by id."""
    camps = tuple(sorted(campaigns, key=lambda c: c.id))
    owner_list: list[int] = []
    clauses = []
    for ci, c in enumerate(camps):
        for cl in c.clauses:
            owner_list.append(ci)
            clauses.append(cl)
    m = len(clauses)
    tags = taxonomy.tag_ids
    tag_index = taxonomy.tag_index()
    n_tags = len(tags)
    zones = tuple(sorted({c.timezone for c in camps})) or ("Asia/Shanghai",)
    zone_pos = {z: i for i, z in enumerate(zones)}
    k_any = max((len(cl.tags_any) for cl in clauses), default=0)

    geo_base = 0
    gender_base = geo_base + taxonomy.geo_domain
    age_base = gender_base + 3
    scene_base = age_base + AGE_DOMAIN
    t0 = scene_base + taxonomy.scene_domain
    time_base = tuple(t0 + z * SLOTS for z in range(len(zones)))
    a0 = t0 + len(zones) * SLOTS
    any_base = tuple(a0 + k * (n_tags + 1) for k in range(k_any))
    all_base = a0 + k_any * (n_tags + 1)
    none_base = all_base + n_tags
    n_rows = none_base + n_tags

    dense = np.zeros((n_rows, max(m, 1)), dtype=bool)
    all_used: set[int] = set()
    for j, cl in enumerate(clauses):
        _fill(dense[:, j], geo_base, taxonomy.geo_domain, cl.geo)
        _fill(dense[:, j], gender_base, 3, cl.gender)
        _fill(dense[:, j], age_base, AGE_DOMAIN, cl.age)
        _fill(dense[:, j], scene_base, taxonomy.scene_domain, cl.scene)
        tb = time_base[zone_pos[camps[owner_list[j]].timezone]]
        _fill(dense[:, j], tb, SLOTS, cl.slots)
        for k in range(k_any):
            if k < len(cl.tags_any):
                for t in cl.tags_any[k]:
                    dense[any_base[k] + tag_index[t], j] = True
            else:
                dense[any_base[k] + n_tags, j] = True
        for t in cl.tags_all:
            dense[all_base + tag_index[t], j] = True
            all_used.add(tag_index[t])
        for t in cl.tags_none:
            dense[none_base + tag_index[t], j] = True
    rows = bitset.pack(dense[:, :m]) if m else np.zeros((n_rows, 1), dtype=np.uint64)
    rows.setflags(write=False)

    owner = np.asarray(owner_list, dtype=np.int32)
    cat_ids = list(taxonomy.categories)
    needs = np.array([camps[o].needs_store for o in owner_list], dtype=bool)
    rt_rules = tuple(_rt_rules(cl, camps[o].advertiser) for cl, o in zip(clauses, owner_list))
    return CampaignIndex(
        version=version,
        campaigns=camps,
        ids=tuple(c.id for c in camps),
        position={c.id: i for i, c in enumerate(camps)},
        owner=owner,
        n_words=rows.shape[1],
        rows=rows,
        geo_base=geo_base,
        gender_base=gender_base,
        age_base=age_base,
        scene_base=scene_base,
        time_base=time_base,
        zones=zones,
        zone_of=np.array([zone_pos[c.timezone] for c in camps], dtype=np.int16),
        any_base=any_base,
        all_base=all_base,
        none_base=none_base,
        all_tags_used=np.array(sorted(all_used), dtype=np.int32),
        all_tags_list=tuple(sorted(all_used)),
        tag_index=tag_index,
        active=np.array([c.status == "active" for c in camps], dtype=bool),
        start_day=np.array([c.start.toordinal() if c.start else 0 for c in camps], dtype=np.int32),
        end_day=np.array([c.end.toordinal() if c.end else 2**31 - 1 for c in camps], dtype=np.int32),
        bid=np.array([c.bid for c in camps], dtype=np.float64),
        is_cpc=np.array([c.bid_type == "cpc" for c in camps], dtype=bool),
        category=np.array([cat_ids.index(c.category) for c in camps], dtype=np.int16),
        prior_ctr=np.array([taxonomy.categories[c.category].prior_ctr for c in camps], dtype=np.float64),
        needs_store=needs,
        store_words=bitset.pack(needs) if m else np.zeros(1, dtype=np.uint64),
        needs_user=np.array([c.spec.uses_retargeting or c.cap_per is not None for c in camps], dtype=bool),
        first_clause=np.searchsorted(owner, np.arange(len(camps)), side="left").astype(np.int32),
        budget=np.array([np.nan if c.daily_budget is None else c.daily_budget for c in camps], dtype=np.float64),
        budgeted=np.array([i for i, c in enumerate(camps) if c.daily_budget is not None], dtype=np.int64),
        shown=tuple((c.id, c.advertiser, c.bid_type, c.bid) for c in camps),
        state_meta=tuple((c.advertiser, c.spec.uses_retargeting, c.cap_per, zone_pos[c.timezone], cap_key(c.id, ""),
                          float("inf") if c.cap_impressions is None else float(c.cap_impressions)) for c in camps),
        rt_rules=rt_rules,
        advertisers=frozenset(c.advertiser for c in camps),
        longest_window_days=max(
            (d for cl in clauses for rules in (*cl.rt_any, tuple(cl.rt_none)) for _, d in rules), default=0
        ),
        state=_state_arrays(camps, clauses, rt_rules, needs, owner),
    )


def _rt_rules(cl: Clause, advertiser: str) -> RtRules | None:
    if not (cl.rt_any or cl.rt_none):
        return None
    return (tuple(tuple(((advertiser, e), float(d * DAY)) for e, d in rules) for rules in cl.rt_any),
            tuple(((advertiser, e), float(d * DAY)) for e, d in cl.rt_none))


def _fill(col: np.ndarray, base: int, size: int, allowed: frozenset[int] | None) -> None:
    if allowed is None:
        col[base : base + size] = True
    else:
        for v in allowed:
            col[base + v] = True



__all__ = ["CampaignIndex", "RtRules", "StateArrays", "Window", "compile_campaigns"]
