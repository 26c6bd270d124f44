"""One decision, from a validated request to the answer dict (pure, given the store's answer).

The flow: profile merge → bitset match → store checks on the few candidates
that need state (retargeting, frequency caps, budgets) → pCTR → eCPM ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import bitset
from .compiler import CampaignIndex
from .matcher import Moment, Point, first_failures, match, moment, sorted_tag_indices
from .request import Request
from .scoring import ClickModel, ecpm, rank
from .state import budget_allows, cap_key, spend_key
from .stores.base import StateQuery, UserState
from .taxonomy import UNKNOWN, Taxonomy, gender_index

DAY = 86400.0


@dataclass
class Pending:
    """A request after the bitset stage, waiting for its store answer."""

    request: Request
    moment: Moment
    point: Point
    clauses: np.ndarray  # int64[]: eligible clause indices (targeting + flight)
    needs: np.ndarray  # int64[]: the subset of ``clauses`` that needs store state
    query: StateQuery | None
    cap_of: dict[int, int] = field(default_factory=dict)  # campaign -> position in query.user_counters
    spend_of: dict[int, int] = field(default_factory=dict)  # campaign -> position in query.shared_counters


def point_of(req: Request, tx: Taxonomy, tag_index: dict[str, int]) -> Point:
    scenes = tx.scene_index()
    return Point(
        geo=tx.geo_leaf(req.province, req.city),
        gender=gender_index(req.gender),
        age=UNKNOWN if req.age is None else req.age + 1,
        scene=scenes.get(req.scene, UNKNOWN) if req.scene else UNKNOWN,
        tags=sorted_tag_indices(req.tags, tag_index),
    )


def prepare(index: CampaignIndex, tx: Taxonomy, req: Request) -> Pending:
    """Bitset stage, and the store query the survivors need (``None`` if none)."""
    m = moment(index.zones, req.ts)
    p = point_of(req, tx, index.tag_index)
    words = match(index, p, m)
    clauses = bitset.to_indices(words)
    needs = bitset.to_indices(words & index.store_words) if clauses.size else clauses
    pend = Pending(req, m, p, clauses, needs, None)
    if needs.size:
        advertisers: dict[str, None] = {}
        caps: list[str] = []
        spends: list[str] = []
        for ci in dict.fromkeys(index.owner[needs].tolist()):
            c = index.campaigns[ci]
            local = m.local[index.zone_of[ci]]
            if c.spec.uses_retargeting:
                advertisers[c.advertiser] = None
            if c.cap_impressions is not None and c.cap_per is not None:
                pend.cap_of[ci] = len(caps)
                caps.append(cap_key(c.id, c.cap_per, local))
            if c.daily_budget is not None:
                pend.spend_of[ci] = len(spends)
                spends.append(spend_key(c.id, local))
        pend.query = StateQuery(req.user_id, tuple(advertisers), tuple(caps), tuple(spends))
    return pend


def finish(
    index: CampaignIndex, tx: Taxonomy, model: ClickModel, pend: Pending, state: UserState | None,
    degraded: Sequence[str] = (),
) -> dict[str, object]:
    """Store checks, scoring and ranking → the contract's decide answer.

    ``state`` is ``None`` when the store could not answer: clauses that need it
    are skipped (fail closed) and ``degraded`` says why.
    """
    req, m = pend.request, pend.moment
    rejected: dict[int, str] = {}
    ok = pend.clauses
    if pend.needs.size:
        drop = np.zeros(pend.clauses.size, dtype=bool)
        need_set = set(pend.needs.tolist())
        for k, j in enumerate(pend.clauses.tolist()):
            if j not in need_set:
                continue
            ci = int(index.owner[j])
            why = "store" if state is None else _state_check(index, j, ci, pend, state)
            if why is not None:
                drop[k] = True
                rejected.setdefault(ci, why)
        ok = pend.clauses[~drop]
    camps = np.unique(index.owner[ok]) if ok.size else np.zeros(0, dtype=np.int64)
    for ci in camps.tolist():
        rejected.pop(ci, None)  # another clause of the campaign passed
    pctr = model.predict(req, camps, index) if camps.size else np.zeros(0)
    values = ecpm(index, camps, pctr) if camps.size else np.zeros(0)
    top = rank(camps, values, req.floor_cpm, req.limit) if camps.size else np.zeros(0, dtype=np.int64)
    decisions = []
    for k in top.tolist():
        c = index.campaigns[int(camps[k])]
        decisions.append({
            "campaign_id": c.id,
            "advertiser": c.advertiser,
            "ecpm": round(float(values[k]), 6),
            "pctr": round(float(pctr[k]), 6),
            "bid": {c.bid_type: c.bid},
        })
    above_floor = values >= req.floor_cpm
    answer: dict[str, object] = {
        "request_id": req.request_id,
        "decisions": decisions,
        "eligible": int(above_floor.sum()),
        "degraded": list(degraded),
        "index_version": index.version,
    }
    if req.explain:
        reasons = first_failures(index, pend.point, m)
        reasons.update({ci: why for ci, why in rejected.items()})
        for k, ci in enumerate(camps.tolist()):
            if not above_floor[k]:
                reasons[ci] = "floor_cpm"
        answer["explain"] = {
            "eligible": [index.ids[ci] for k, ci in enumerate(camps.tolist()) if above_floor[k]],
            "rejected": {index.ids[ci]: reasons.get(ci, "targeting") for ci in sorted(
                set(range(index.n_campaigns)) - {int(c) for c, a in zip(camps, above_floor) if a}
            )},
        }
    return answer


def _state_check(index: CampaignIndex, clause: int, ci: int, pend: Pending, state: UserState) -> str | None:
    c = index.campaigns[ci]
    cl = c.clauses[clause - _first_clause(index, ci)]
    now = pend.request.ts
    if cl.rt_any or cl.rt_none:
        def seen(event: str, days: int) -> bool:
            ts = state.events.get((c.advertiser, event))
            return ts is not None and now - days * DAY <= ts <= now + 300

        if not all(any(seen(e, d) for e, d in rules) for rules in cl.rt_any):
            return "retargeting"
        if any(seen(e, d) for e, d in cl.rt_none):
            return "retargeting"
    if ci in pend.cap_of and c.cap_impressions is not None:
        if state.user_counters[pend.cap_of[ci]] >= c.cap_impressions:
            return "frequency_cap"
    if ci in pend.spend_of and c.daily_budget is not None:
        frac = pend.moment.day_fraction[index.zone_of[ci]]
        return budget_allows(state.shared_counters[pend.spend_of[ci]], c.daily_budget, frac)
    return None


def _first_clause(index: CampaignIndex, ci: int) -> int:
    # clauses of a campaign are contiguous and in campaign order
    return int(np.searchsorted(index.owner, ci, side="left"))
