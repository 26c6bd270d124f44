"""The decide fast path (``targeting.ordered``) against the exhaustive one (``targeting.decide.prepare``).

Both are finished by the same ``decide.finish`` with the same store answers;
the answers must be equal: decisions, their order (ties by id), ``eligible``,
``degraded``, and the campaigns whose per-user state is looked up."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import strategies as S
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from targeting import Engine, RulesError, ordered
from targeting.compiler import CampaignIndex, compile_campaigns
from targeting.decide import finish, prepare
from targeting.layout import Layout
from targeting.matcher import moment
from targeting.request import Request, parse_request
from targeting.rules import validate_campaigns
from targeting.scoring import PriorModel
from targeting.spec import EVENTS
from targeting.stores import Event, MemoryStore

NOW = 1_790_000_000.0


class ToyModel:
    """pCTR from the request and the campaign, with an upper bound (as ``LearnedModel``)."""

    version = "toy-1"

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        lift = 1.0 + 0.5 * len(request.tags or ()) + (0.25 if request.gender == "female" else 0.0)
        return np.minimum(index.prior_ctr[campaigns] * lift * (1 + (campaigns % 3)), 1.0)

    def max_pctr(self, index: CampaignIndex) -> np.ndarray:
        return np.minimum(index.prior_ctr * 3.25 * 3, 1.0)


class UnboundedModel:
    """No ``max_pctr``: the bound falls back to pCTR 1."""

    version = "toy-unbounded"

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        return ToyModel().predict(request, campaigns, index)


def extras() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={
        "frequency_cap": st.fixed_dictionaries({"impressions": st.integers(1, 2),
                                                "per": st.sampled_from(["hour", "day", "week"])}),
        "daily_budget": st.sampled_from([0.001, 1000.0]),
        "retargeting": S.retargeting_spec(),
    })


def with_extras(raw: list[dict[str, Any]], more: list[dict[str, Any]], equal_bids: bool) -> list[dict[str, Any]]:
    out = []
    for c, x in zip(raw, more):
        c = {**c, **{k: v for k, v in x.items() if k != "retargeting"}}
        if "retargeting" in x:
            c["targeting"] = {**c["targeting"], "retargeting": x["retargeting"]}
        if equal_bids:  # ties everywhere: the id tie-break must survive the early stop
            c["bid"] = {"cpm": 2.0}
        out.append(c)
    return out


@settings(deadline=None, max_examples=max(300, settings().max_examples),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    data=st.data(),
    model_kind=st.sampled_from(["prior", "toy", "unbounded", "learned", "learned-wide"]),
    first_step=st.sampled_from([1, 2, 3, 512]),
    equal_bids=st.booleans(),
)
def test_fast_path_equals_exhaustive(data: st.DataObject, model_kind: str, first_step: int, equal_bids: bool) -> None:
    raw = data.draw(S.campaigns(max_size=12))
    raw = with_extras(raw, data.draw(st.lists(extras(), min_size=len(raw), max_size=len(raw))), equal_bids)
    tx = S.taxonomy()
    try:
        camps = validate_campaigns([("t.yaml", raw)], tx)
    except RulesError as e:
        assert all("matches nobody" in p.reason for p in e.problems), e.problems
        reject()
    index = compile_campaigns(camps, tx, "t")
    if model_kind.startswith("learned"):  # per-request bounds (targeting.bounds), tight or loose weights
        model: Any = S.click_model(tx, list(index.ids), data.draw(st.integers(0, 999)),
                                   1.5 if model_kind == "learned-wide" else 0.4)
    else:
        model = {"prior": PriorModel(), "toy": ToyModel(), "unbounded": UnboundedModel()}[model_kind]
    store = MemoryStore(clock=lambda: NOW)
    engine = Engine(tx, index, store=store, model=model, clock=lambda: NOW)
    raw_req = {**data.draw(S.request()), "limit": data.draw(st.integers(1, 4)),
               "floor_cpm": data.draw(st.sampled_from([0.0, 0.0, 1.0, 2.0, 5.0]))}
    req = parse_request(raw_req, tx, now=NOW)
    # some history: events of the advertiser, impressions toward caps and budgets
    seen = data.draw(st.lists(st.sampled_from(EVENTS), max_size=3, unique=True))
    store.add_events([Event("u1", "adv", e, req.ts - 3600) for e in seen], ttl=10**9)
    shown = data.draw(st.lists(st.sampled_from(engine.index.ids), max_size=6))
    engine.record_impressions([{"user_id": "u1", "campaign_id": c, "ts": req.ts, "price": 1.0} for c in shown])

    snap = engine._snap
    m = moment(snap.index.zones, req.ts)
    blocked = engine._spend.blocked(snap.index, m, store) if snap.index.budgeted.size else None
    slow = prepare(snap.index, tx, req, model, blocked, m)
    # a learned model's block walk even on these few campaigns (the engine's own walks them in one)
    o = ordered.ordered_index(Layout.of(snap.index, model), blocks_from=0) if model_kind.startswith("learned") else snap.ordered
    fast = ordered.prepare(o, tx, req, blocked, m, first_step=first_step)
    assert sorted(fast.needs) == sorted(slow.needs)
    assert fast.n_candidates == slow.n_candidates
    assert ("store" in fast.budget_reasons.values()) == ("store" in slow.budget_reasons.values())

    def answer(p: Any) -> dict[str, Any]:
        state = store.fetch([p.query])[0] if p.query is not None else None
        return finish(snap.index, tx, model, p, state)

    assert answer(fast) == answer(slow)


def test_engine_decide_uses_the_fast_path_and_explain_agrees() -> None:
    """Through ``Engine.decide``: the same decisions with and without ``explain`` on the
    repository's campaigns (explain takes the exhaustive path)."""
    engine = Engine.load("rules", clock=lambda: NOW)
    rng = np.random.default_rng(7)
    tags = engine.taxonomy.tag_ids
    for i in range(300):
        r: dict[str, Any] = {"user_id": f"u{i}", "ts": NOW - int(rng.integers(0, 7 * 86400)),
                             "gender": ["male", "female"][i % 2], "age": int(rng.integers(16, 60)),
                             "tags": list(rng.choice(tags, size=int(rng.integers(0, 4)), replace=False)),
                             "geo": {"province": [440000, 310000, 110000, 510000][i % 4]}, "limit": 1 + i % 5}
        a, b = engine.decide(r), engine.decide({**r, "explain": True})
        assert a["decisions"] == b["decisions"]
        assert a["eligible"] == b["eligible"] == len(b["explain"]["eligible"])


@pytest.mark.parametrize(("seed", "spread"), [(1, 0.4), (2, 1.0), (3, 2.0)])
def test_learned_model_fast_path_equals_exhaustive_at_scale(seed: int, spread: float) -> None:
    """A learned model over 600 generated campaigns in every category, with limits and floors:
    the same answers and ``eligible`` as the exhaustive path, while the request's own bound
    stops the walk early (the requests score a fraction of their candidates)."""
    from targeting.gen import generate_campaigns

    tx = S.taxonomy()
    now = time.time()  # generated flights are relative to today
    index = compile_campaigns(validate_campaigns([("gen.yaml", generate_campaigns(600, tx, seed))], tx), tx, "g")
    model = S.click_model(tx, list(index.ids), seed, spread)
    store = MemoryStore(clock=lambda: now)
    engine = Engine(tx, index, store=store, model=model, clock=lambda: now)
    o = engine._snap.ordered
    assert o.blocks is not None
    rng = np.random.default_rng(seed)
    provinces = [440000, 310000, 110000, 510000, 330000]
    scored = candidates = 0
    predict_user = model.predict_user
    counted: list[int] = []  # campaigns the fast path scores (``ranked`` keeps only what can still answer)

    def counting(u: Any, campaigns: Any, idx: Any) -> Any:
        counted.append(len(campaigns))
        return predict_user(u, campaigns, idx)

    model.predict_user = counting
    for i in range(150):
        raw: dict[str, Any] = {
            "user_id": f"u{i}", "ts": now - int(rng.integers(0, 86400)), "gender": ["male", "female"][i % 2],
            "age": int(rng.integers(16, 60)), "geo": {"province": provinces[i % 5]}, "limit": [1, 3, 10, 30][i % 4],
            "tags": list(rng.choice(tx.tag_ids, size=int(rng.integers(0, 5)), replace=False)),
            "floor_cpm": [0.0, 5.0, 40.0][i % 3],
        }
        req = parse_request(raw, tx, now=now)
        m = moment(index.zones, req.ts)
        slow = prepare(index, tx, req, model, None, m)
        counted.clear()
        fast = ordered.prepare(o, tx, req, None, m, first_step=4)  # small steps: stops show
        assert fast.n_candidates == slow.n_candidates, raw
        assert finish(index, tx, model, fast, None) == finish(index, tx, model, slow, None), raw
        if raw["floor_cpm"] == 0 and raw["limit"] <= 3:  # (a floor walks every block down to it)
            scored += sum(counted)
            candidates += len(slow.ranked)
    assert scored < candidates / 2  # the bound is doing its job


def test_blocked_bits_follow_the_mirrors_answer() -> None:
    """The budget-blocked campaigns become every one of their clause bits, converted once
    per mirror answer (by identity), both for a few campaigns and for many."""
    engine = Engine.load("rules", clock=lambda: NOW)
    o = engine._snap.ordered
    ix = engine.index
    assert o.blocked_bits({}) == 0
    multi = next(ci for ci, c in enumerate(ix.campaigns) if len(c.clauses) > 1)
    few = {multi: "budget", 0: "pacing"}
    many = dict.fromkeys(range(ix.n_campaigns), "store")
    for blocked in (few, many):
        bits = o.blocked_bits(blocked)
        want = {j for j in range(ix.n_clauses) if int(ix.owner[j]) in blocked}
        got = {int(o.perm[i]) for i in range(o.m) if bits >> i & 1}
        assert got == want
        assert o.blocked_bits(blocked) is bits  # cached while the mirror's answer is the same object


def test_eligible_counts_a_campaign_once_whichever_of_its_clauses_match() -> None:
    """``any_of`` makes several clauses per campaign; the fast path counts campaigns
    with one popcount after OR-ing each campaign's clause bits into its last clause."""
    tx = S.taxonomy()
    alternatives = [{"gender": "male"}, {"age": [[20, 29]]}, {"gender": "female"}, {"age": [[30, 39]]},
                    {"scene": ["home"]}]
    sizes = {"c2": 5, "c1": 2, "c0": 3}  # c2 bids highest: positions 0-4, then c1 5-6, then c0 7-9
    raw = [{"id": f"c{i}", "advertiser": "adv", "bid": {"cpm": 1.0 + i}, "category": "auto",
            "targeting": {"any_of": alternatives[: sizes[f"c{i}"]]}} for i in range(3)]
    engine = Engine(tx, compile_campaigns(validate_campaigns([("t.yaml", raw)], tx), tx, "t"), clock=lambda: NOW)
    assert engine.index.n_clauses == 10
    for attrs, want in [({"gender": "male"}, ["c2", "c1", "c0"]), ({"age": 25}, ["c2", "c1", "c0"]),
                        ({"age": 35}, ["c2"]), ({"gender": "female", "age": 50}, ["c2", "c0"]),
                        ({"age": 50, "scene": "home"}, ["c2"]), ({"age": 50, "scene": "office"}, [])]:
        answer = engine.decide({"user_id": "u1", "ts": NOW, **attrs})
        assert answer["eligible"] == len(want), attrs
        assert [d["campaign_id"] for d in answer["decisions"]] == want
    o = engine._snap.ordered
    for a in range(1 << 5):  # any subsets of each campaign's clauses: each non-empty one counts once
        for b in range(1 << 2):
            for c in range(1 << 3):
                assert o.count(a | b << 5 | c << 7) == (a > 0) + (b > 0) + (c > 0), (a, b, c)


def test_scored_walk_keeps_going_while_an_unvisited_bound_is_higher() -> None:
    """Learned pCTR: c0 bids more (higher bound, visited first) but c1's pCTR is twice as
    high, so c1 wins. Visiting one campaign at a time, the walk must not stop at c0."""
    tx = S.taxonomy()
    raw = [{"id": f"c{i}", "advertiser": "adv", "bid": {"cpc": bid}, "category": "auto", "targeting": {}}
           for i, bid in enumerate([5.0, 4.0])]
    engine = Engine(tx, compile_campaigns(validate_campaigns([("t.yaml", raw)], tx), tx, "t"), model=ToyModel(),
                    clock=lambda: NOW)
    snap = engine._snap
    req = parse_request({"user_id": "u1", "ts": NOW, "limit": 1}, tx, now=NOW)
    m = moment(snap.index.zones, req.ts)
    assert [int(c) for c in snap.ordered.owner] == [0, 1]  # c0's bound is higher: visited first
    for step in (1, 512):
        fast = ordered.prepare(snap.ordered, tx, req, None, m, first_step=step)
        answer = finish(snap.index, tx, snap.model, fast, None)
        assert [d["campaign_id"] for d in answer["decisions"]] == ["c1"]
        assert answer["eligible"] == 2


def test_floor_just_above_a_bid_excludes_it() -> None:
    """The walk's bound is inflated by 1e-9 against rounding; the floor must still be
    compared with the exact eCPM (a cpm bid of 2.0 does not meet a floor of 2.0000000001)."""
    tx = S.taxonomy()
    raw = [{"id": f"c{i}", "advertiser": "adv", "bid": {"cpm": bid}, "category": "auto", "targeting": {}}
           for i, bid in enumerate([3.0, 2.0, 1.0])]
    engine = Engine(tx, compile_campaigns(validate_campaigns([("t.yaml", raw)], tx), tx, "t"), clock=lambda: NOW)
    for floor, want in [(2.0, ["c0", "c1"]), (2.0000000001, ["c0"]), (0.0, ["c0", "c1", "c2"])]:
        answer = engine.decide({"user_id": "u1", "ts": NOW, "floor_cpm": floor})
        assert [d["campaign_id"] for d in answer["decisions"]] == want
        assert answer["eligible"] == len(want)


def test_retargeting_of_a_campaign_with_several_clauses() -> None:
    """A campaign with ``any_of`` is several clauses; its retargeting check needs to know
    which of them matched, which the prior model's walk records only for such campaigns."""
    tx = S.taxonomy()
    rt = {"any": [{"event": "visit", "within_days": 30}]}
    raw = [{"id": "multi", "advertiser": "adv", "bid": {"cpm": 9.0}, "category": "auto",
            "targeting": {"any_of": [{"gender": "male"}, {"age": [[20, 29]]}], "retargeting": rt}},
           {"id": "plain", "advertiser": "adv", "bid": {"cpm": 1.0}, "category": "auto", "targeting": {}}]
    store = MemoryStore(clock=lambda: NOW)
    engine = Engine(tx, compile_campaigns(validate_campaigns([("t.yaml", raw)], tx), tx, "t"), store=store,
                    clock=lambda: NOW)
    store.add_events([Event("u1", "adv", "visit", NOW - 86400)], ttl=10**9)
    for attrs in ({"gender": "male"}, {"age": 25}, {"gender": "male", "age": 25}):
        for who, want in (("u1", ["multi", "plain"]), ("u2", ["plain"])):
            answer = engine.decide({"user_id": who, "ts": NOW, **attrs})
            assert [d["campaign_id"] for d in answer["decisions"]] == want, (who, attrs)
