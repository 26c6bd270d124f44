"""One decision, from a validated request to the answer dict (pure, given the store's answer).

The flow: bitset match (targeting, flight, budgets from the spend mirror) →
pCTR and eCPM for every candidate at once → ranking → per-user state checks
(retargeting, frequency caps) for the candidates that can still make the
answer, in one store round trip → the contract's answer.

Only candidates ranked above the ``limit``-th campaign that needs no per-user
state are checked: a campaign that cannot win is never looked up. With
``explain`` every candidate is checked, so the eligible list is exact.
``eligible`` counts candidates not known to be rejected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import bitset
from .compiler import CampaignIndex, RtRules
from .matcher import Moment, Point, first_failures, match, moment, sorted_tag_indices
from .request import Request
from .scoring import ClickModel, PriorModel, ecpm
from .state import capped
from .stores.base import StateQuery, UserState
from .taxonomy import UNKNOWN, Taxonomy, gender_index

_EMPTY_INT = np.zeros(0, dtype=np.int64)
_EMPTY_INT.setflags(write=False)


@dataclass
class Pending:
    """A request after the bitset and scoring stages, waiting for its store answer.

    Plain lists, not arrays: a decision handles tens of campaigns, where numpy's
    per-call cost is larger than the work."""

    request: Request
    moment: Moment
    point: Point
    clauses: list[int]  # eligible clause indices (targeting, flight, budget), any order;
    # the fast path (targeting.ordered) lists only the clauses it visited
    needs: list[int]  # campaign positions whose per-user state is checked
    query: StateQuery | None
    cap_of: dict[int, int] = field(default_factory=dict)  # campaign -> position in query.user_counters
    ranked: list[int] = field(default_factory=list)  # campaigns, best first
    values: list[float] = field(default_factory=list)  # eCPM, aligned with ranked (empty with ``heads``)
    pctr: list[float] = field(default_factory=list)  # aligned with ranked (empty with ``heads``)
    below_floor: np.ndarray = field(default_factory=lambda: _EMPTY_INT)  # campaigns (explain only)
    budget_reasons: dict[int, str] = field(default_factory=dict)  # campaign -> budget | pacing | store
    n_candidates: int = 0  # campaigns above the floor; ``ranked`` may hold only the head of them
    heads: Sequence[dict[str, Any]] | None = None  # per campaign, its decision but "bid", when the
    # model's pCTR does not depend on the request (the prior): copied instead of rebuilt


def point_of(req: Request, tx: Taxonomy, tag_index: dict[str, int]) -> Point:
    return Point(
        geo=tx.geo_leaf(req.province, req.city),
        gender=gender_index(req.gender),
        age=UNKNOWN if req.age is None else req.age + 1,
        scene=tx.scene_index().get(req.scene, UNKNOWN) if req.scene else UNKNOWN,
        tags=sorted_tag_indices(req.tags, tag_index),
    )


def prepare(
    index: CampaignIndex, tx: Taxonomy, req: Request, model: ClickModel | None = None,
    blocked: dict[int, str] | None = None, mo: Moment | None = None,
) -> Pending:
    """Bitset stage, scoring, ranking, and the store query the contenders need.

    ``blocked``: campaigns that may not spend now, with the reason (the spend
    mirror's answer); ``None`` = none blocked.
    ``mo`` is the request's :class:`Moment` when the caller has it already.
    """
    mo = mo or moment(index.zones, req.ts)
    p = point_of(req, tx, index.tag_index)
    words = match(index, p, mo)
    reasons: dict[int, str] = {}
    if blocked:
        mask = np.zeros(index.n_campaigns, dtype=bool)
        mask[list(blocked)] = True
        no = bitset.pack(mask[index.owner])
        hit = words & no
        if hit.any():
            words = words & ~no
            for ci in np.unique(index.owner[bitset.to_indices(hit)]).tolist():
                reasons[ci] = blocked[ci]
    clauses = bitset.to_indices(words)
    owners = index.owner[clauses]  # ascending, since clauses are ascending and contiguous per campaign
    camps = owners[run_starts(owners)]
    pend = Pending(req, mo, p, clauses.tolist(), [], None, budget_reasons=reasons)
    if not camps.size:
        return pend
    pctr = (model or _PRIOR).predict(req, camps, index)
    values = ecpm(index, camps, pctr)
    above = values >= req.floor_cpm
    pend.below_floor = camps[~above]
    camps, values, pctr = camps[above], values[above], pctr[above]
    n = pend.n_candidates = int(camps.size)
    # Rank only the head: the top k by eCPM (all ties at the k-th value included, so
    # the id tie-break stays exact), widened until it holds ``limit`` campaigns that
    # need no per-user state or everything. ``explain`` ranks everything.
    k = n if req.explain else min(n, max(4 * req.limit, 64))
    while True:
        if k < n:
            kth = -np.partition(-values, k - 1)[k - 1]
            head = np.flatnonzero(values >= kth)
            order = head[np.argsort(-values[head], kind="stable")]  # head ascends: ties stay in id order
        else:
            order = np.argsort(-values, kind="stable")
        ranked = camps[order]
        needs_user = index.needs_user[ranked]
        free = np.flatnonzero(~needs_user)
        if k >= n or free.size >= req.limit:
            break
        k *= 4
    pend.ranked, pend.values, pend.pctr = ranked.tolist(), values[order].tolist(), pctr[order].tolist()
    state_query(index, pend, contenders(index, ranked, req.limit, everything=req.explain))
    return pend


def run_starts(a: np.ndarray) -> np.ndarray:
    """bool[len(a)]: where a run of equal values begins (one entry per campaign of a list
    of clauses whose campaigns come in runs)."""
    out = np.empty(a.size, dtype=bool)
    if a.size:
        out[0] = True
        np.not_equal(a[1:], a[:-1], out=out[1:])
    return out


def contenders(index: CampaignIndex, ranked: np.ndarray, limit: int, everything: bool = False) -> list[int]:
    """Campaigns of ``ranked`` (best first) that need per-user state and rank above the
    ``limit``-th one that does not; all that need state when ``everything`` or when fewer
    than ``limit`` need none."""
    needs_user = index.needs_user[ranked]
    cut = ranked.size
    if not everything:
        free = (~needs_user).nonzero()[0]
        if free.size >= limit:
            cut = int(free[limit - 1]) + 1
    return ranked[:cut][needs_user[:cut]].tolist()


def state_query(index: CampaignIndex, pend: Pending, needs: list[int]) -> None:
    """Set ``pend.needs``, ``cap_of`` and ``query`` for the campaigns ``needs``: the
    contenders that need per-user state (retargeting events, frequency counters)."""
    if not needs:
        return
    pend.needs = needs
    advertisers: dict[str, None] = {}
    caps: list[str] = []
    labels = pend.moment.labels
    for ci in needs:
        adv, has_rt, cap_per, zone, prefix, _ = index.state_meta[ci]
        if has_rt:
            advertisers[adv] = None
        if cap_per is not None:
            pend.cap_of[ci] = len(caps)
            caps.append(prefix + labels[zone][cap_per])  # state.cap_key(id, label)
    pend.query = StateQuery(pend.request.user_id, tuple(advertisers), tuple(caps), ())


_PRIOR = PriorModel()


def finish(
    index: CampaignIndex, tx: Taxonomy, model: ClickModel, pend: Pending, state: UserState | None,
    degraded: Sequence[str] = (),
) -> dict[str, object]:
    """Per-user checks on the contenders → the contract's decide answer.

    ``state`` is ``None`` when the store could not answer: campaigns that need
    it are skipped (fail closed) and ``degraded`` says why.
    """
    req = pend.request
    rejected: dict[int, str] = {}  # among the ranked candidates
    for ci in pend.needs:
        why = "store" if state is None else _user_check(index, ci, pend, state)
        if why is not None:
            rejected[ci] = why
    ranked, shown = pend.ranked, index.shown
    top = [k for k, ci in enumerate(ranked) if ci not in rejected][: req.limit] if rejected \
        else range(min(req.limit, len(ranked)))  # positions in ``ranked`` of the answer's campaigns
    if pend.heads is not None:  # the prior model: eCPM and pCTR are the campaign's own
        decisions = []
        for k in top:
            d = pend.heads[ranked[k]].copy()
            d["bid"] = {shown[ranked[k]][2]: shown[ranked[k]][3]}
            decisions.append(d)
    else:
        decisions = [decision(*shown[ranked[k]], pend.values[k], pend.pctr[k]) for k in top]
    answer: dict[str, object] = {
        "request_id": req.request_id,
        "decisions": decisions,
        "eligible": int(pend.n_candidates - len(rejected)),
        "degraded": list(degraded),
        "index_version": index.version,
    }
    if req.explain:
        reasons = first_failures(index, pend.point, pend.moment)
        reasons.update(pend.budget_reasons)
        reasons.update(rejected)
        for ci in pend.below_floor.tolist():
            reasons[ci] = "floor_cpm"
        eligible = [ci for ci in pend.ranked if ci not in rejected]
        answer["explain"] = {
            "eligible": [index.ids[ci] for ci in sorted(eligible)],
            "rejected": {index.ids[ci]: reasons.get(ci, "targeting")
                         for ci in sorted(set(range(index.n_campaigns)) - set(eligible))},
        }
    return answer


def decision(cid: str, advertiser: str, kind: str, bid: float, ecpm: float, pctr: float) -> dict[str, Any]:
    """One entry of the answer's ``decisions``. ``round(v * 1e6) / 1e6`` is ``np.round(v, 6)``
    value for value (both round half to even), without numpy's per-call cost."""
    return {"campaign_id": cid, "advertiser": advertiser, "ecpm": round(ecpm * 1e6) / 1e6,
            "pctr": round(pctr * 1e6) / 1e6, "bid": {kind: bid}}


def _eligible_clauses(index: CampaignIndex, ci: int, clauses: list[int]) -> list[int]:
    """Clauses of campaign ``ci`` among the eligible ``clauses``."""
    first = int(index.first_clause[ci])
    n = len(index.campaigns[ci].clauses)
    if n == 1:
        return [first]
    return sorted(j for j in clauses if first <= j < first + n)


def _user_check(index: CampaignIndex, ci: int, pend: Pending, state: UserState) -> str | None:
    """Retargeting (some eligible clause's rules hold) and the frequency cap of campaign ``ci``."""
    _, has_rt, _, _, _, cap = index.state_meta[ci]
    if has_rt:
        events, now, rules = state.events, pend.request.ts, index.rt_rules
        if not any(rules_hold(rules[j], now, events) for j in _eligible_clauses(index, ci, pend.clauses)):
            return "retargeting"
    k = pend.cap_of.get(ci)
    if k is not None and capped(state.user_counters[k], cap):
        return "frequency_cap"
    return None


def rules_hold(rules: RtRules | None, now: float, events: Mapping[tuple[str, str], float]) -> bool:
    """Every ``any`` list has a rule seen within its window, and no ``none`` rule is
    (a rule counts events up to 5 minutes in the future: clock skew between servers)."""
    if rules is None:
        return True
    want, avoid = rules
    for options in want:
        for key, window in options:
            ts = events.get(key)
            if ts is not None and now - window <= ts <= now + 300:
                break
        else:
            return False
    for key, window in avoid:
        ts = events.get(key)
        if ts is not None and now - window <= ts <= now + 300:
            return False
    return True


__all__ = ["Pending", "contenders", "decision", "finish", "point_of", "prepare", "rules_hold", "run_starts",
           "state_query"]
