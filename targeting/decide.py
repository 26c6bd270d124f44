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

import numpy as np

from . import bitset
from .compiler import CampaignIndex, RtRules
from .matcher import Moment, Point, first_failures, match, moment, sorted_tag_indices
from .request import Request
from .scoring import ClickModel, PriorModel, ecpm
from .state import budget_allows, cap_key
from .stores.base import StateQuery, UserState
from .taxonomy import UNKNOWN, Taxonomy, gender_index

DAY = 86400.0
_EMPTY_INT = np.zeros(0, dtype=np.int64)
_EMPTY_FLOAT = np.zeros(0, dtype=np.float64)
_EMPTY_INT.setflags(write=False)
_EMPTY_FLOAT.setflags(write=False)


@dataclass
class Pending:
    """A request after the bitset and scoring stages, waiting for its store answer."""

    request: Request
    moment: Moment
    point: Point
    clauses: np.ndarray  # int64[]: eligible clause indices (targeting, flight, budget), any order;
    # the fast path (targeting.ordered) lists only the clauses it visited
    needs: np.ndarray  # int64[]: campaign positions whose per-user state is checked
    query: StateQuery | None
    cap_of: dict[int, int] = field(default_factory=dict)  # campaign -> position in query.user_counters
    spend_of: dict[int, int] = field(default_factory=dict)  # campaign -> position in query.shared_counters
    ranked: np.ndarray = field(default_factory=lambda: _EMPTY_INT)  # campaigns, best first
    values: np.ndarray = field(default_factory=lambda: _EMPTY_FLOAT)  # eCPM, aligned with ranked
    pctr: np.ndarray = field(default_factory=lambda: _EMPTY_FLOAT)  # aligned with ranked
    below_floor: np.ndarray = field(default_factory=lambda: _EMPTY_INT)  # campaigns
    budget_reasons: dict[int, str] = field(default_factory=dict)  # campaign -> budget | pacing | store
    n_candidates: int = 0  # campaigns above the floor; ``ranked`` may hold only the head of them


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
    blocked: tuple[np.ndarray, dict[int, str]] | None = None, m: Moment | None = None,
) -> Pending:
    """Bitset stage, scoring, ranking, and the store query the contenders need.

    ``blocked`` is (uint64[n_words] clauses of campaigns that may not spend now,
    their reasons by campaign) from the spend mirror; ``None`` = none blocked.
    ``m`` is the request's :class:`Moment` when the caller has it already.
    """
    m = m or moment(index.zones, req.ts)
    p = point_of(req, tx, index.tag_index)
    words = match(index, p, m)
    reasons: dict[int, str] = {}
    if blocked is not None and blocked[1]:
        hit = words & blocked[0]
        if hit.any():
            words = words & ~blocked[0]
            for ci in np.unique(index.owner[bitset.to_indices(hit)]).tolist():
                reasons[ci] = blocked[1][ci]
    clauses = bitset.to_indices(words)
    owners = index.owner[clauses]  # ascending, since clauses are ascending and contiguous per campaign
    if clauses.size:
        first = np.empty(owners.size, dtype=bool)
        first[0] = True
        np.not_equal(owners[1:], owners[:-1], out=first[1:])
        camps = owners[first]
    else:
        camps = np.zeros(0, dtype=np.int32)
    pend = Pending(req, m, p, clauses, _EMPTY_INT, None, budget_reasons=reasons)
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
    pend.ranked, pend.values, pend.pctr = ranked, values[order], pctr[order]
    contenders_query(index, pend, m)
    return pend


def contenders_query(index: CampaignIndex, pend: Pending, m: Moment) -> None:
    """Set ``pend.needs``, ``cap_of`` and ``query`` from ``pend.ranked``: the campaigns
    that need per-user state and rank above the ``limit``-th one that does not
    (all of them with ``explain`` or when fewer than ``limit`` need none)."""
    req, ranked = pend.request, pend.ranked
    needs_user = index.needs_user[ranked]
    cut = ranked.size
    if not req.explain:
        free = (~needs_user).nonzero()[0]
        if free.size >= req.limit:
            cut = int(free[req.limit - 1]) + 1
    needs = ranked[:cut][needs_user[:cut]]
    if not needs.size:
        return
    pend.needs = needs
    advertisers: dict[str, None] = {}
    caps: list[str] = []
    labels = m.labels
    for ci in needs.tolist():
        cid, adv, has_rt, cap_per, zone = index.state_meta[ci]
        if has_rt:
            advertisers[adv] = None
        if cap_per is not None:
            pend.cap_of[ci] = len(caps)
            caps.append(cap_key(cid, labels[zone][cap_per]))
    pend.query = StateQuery(req.user_id, tuple(advertisers), tuple(caps), ())


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
    for ci in pend.needs.tolist():
        why = "store" if state is None else _user_check(index, ci, pend, state)
        if why is not None:
            rejected[ci] = why
    ranked = pend.ranked
    if rejected:
        top = [k for k, ci in enumerate(ranked.tolist()) if ci not in rejected][: req.limit]
        sel = np.asarray(top, dtype=np.int64)
        camps, values, pctr = ranked[sel], pend.values[sel], pend.pctr[sel]
    else:
        camps, values, pctr = ranked[: req.limit], pend.values[: req.limit], pend.pctr[: req.limit]
    shown = index.shown
    # round(v * 1e6) / 1e6 is np.round(v, 6) value for value (both round half to even), minus numpy's per-call cost
    decisions = [
        {"campaign_id": cid, "advertiser": adv, "ecpm": round(v * 1e6) / 1e6, "pctr": round(q * 1e6) / 1e6,
         "bid": {kind: bid}}
        for (cid, adv, kind, bid), v, q in zip([shown[ci] for ci in camps.tolist()], values.tolist(), pctr.tolist())
    ]
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
        eligible = [ci for ci in pend.ranked.tolist() if ci not in rejected]
        answer["explain"] = {
            "eligible": [index.ids[ci] for ci in sorted(eligible)],
            "rejected": {index.ids[ci]: reasons.get(ci, "targeting")
                         for ci in sorted(set(range(index.n_campaigns)) - set(eligible))},
        }
    return answer


def _eligible_clauses(index: CampaignIndex, ci: int, clauses: np.ndarray) -> list[int]:
    """Clauses of campaign ``ci`` among the eligible ``clauses``."""
    first = int(index.first_clause[ci])
    n = len(index.campaigns[ci].clauses)
    if n == 1:
        return [first]
    return sorted(clauses[(clauses >= first) & (clauses < first + n)].tolist())


def _user_check(index: CampaignIndex, ci: int, pend: Pending, state: UserState) -> str | None:
    """Retargeting (some eligible clause's rules hold) and the frequency cap of campaign ``ci``."""
    if index.has_rt_list[ci]:
        events, now, rules = state.events, pend.request.ts, index.rt_rules
        if not any(_rules_hold(rules[j], now, events) for j in _eligible_clauses(index, ci, pend.clauses)):
            return "retargeting"
    k = pend.cap_of.get(ci)
    if k is not None:
        cap = index.campaigns[ci].cap_impressions
        if cap is not None and state.user_counters[k] >= cap:
            return "frequency_cap"
    return None


def _rules_hold(rules: RtRules | None, now: float, events: Mapping[tuple[str, str], float]) -> bool:
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


def state_check(index: CampaignIndex, clause: int, ci: int, pend: Pending, state: UserState) -> str | None:
    """The whole per-clause state check (retargeting, cap, budget), for callers that
    fetch state themselves (the batch scorer). ``None`` = passes, else the reason."""
    c = index.campaigns[ci]
    if not _rules_hold(index.rt_rules[clause], pend.request.ts, state.events):
        return "retargeting"
    if ci in pend.cap_of and c.cap_impressions is not None \
            and state.user_counters[pend.cap_of[ci]] >= c.cap_impressions:
        return "frequency_cap"
    if ci in pend.spend_of and c.daily_budget is not None:
        frac = pend.moment.day_fraction[index.zone_of[ci]]
        return budget_allows(state.shared_counters[pend.spend_of[ci]], c.daily_budget, frac)
    return None


_state_check = state_check  # the batch scorer's original name

__all__ = ["Pending", "contenders_query", "finish", "point_of", "prepare", "state_check"]
