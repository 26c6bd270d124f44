"""Engine.decide end to end over the in-memory store: ranking, caps, budgets,
pacing, retargeting, degradation, profiles, reload."""

from __future__ import annotations

import datetime as dt
import gc
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from targeting import Engine, RulesError
from targeting.compiler import compile_campaigns
from targeting.rules import validate_campaigns
from targeting.stores import MemoryStore, StateQuery, StoreUnavailable, UserState
from targeting.taxonomy import Taxonomy

SH = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=SH).timestamp()  # Tuesday noon in Shanghai


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


def camp(cid: str, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "advertiser": kw.pop("advertiser", "acme"), "bid": kw.pop("bid", {"cpm": 10}),
            "category": kw.pop("category", "auto"), **kw}


def engine(tx: Taxonomy, campaigns: list[dict[str, Any]], store: Any = None, **kw: Any) -> Engine:
    camps = validate_campaigns([("t.yaml", campaigns)], tx)
    clock = kw.pop("clock", lambda: NOW)
    return Engine(tx, compile_campaigns(camps, tx, "v1"), store=store or MemoryStore(clock=clock), clock=clock, **kw)


def ids(answer: dict[str, Any]) -> list[str]:
    return [d["campaign_id"] for d in answer["decisions"]]


def test_ranking_by_ecpm_ties_by_id_floor_and_limit(tx: Taxonomy) -> None:
    e = engine(tx, [
        camp("b", bid={"cpm": 5}),
        camp("a", bid={"cpm": 5}),  # ties with b: id order
        camp("c", bid={"cpc": 1.0}, category="games"),  # 1.0 × prior(games) × 1000
        camp("d", bid={"cpm": 1}),
    ])
    prior = tx.categories["games"].prior_ctr
    ans = e.decide({"user_id": "u"})
    assert ans["eligible"] == 4
    expected = sorted([("a", 5.0), ("b", 5.0), ("c", 1000 * prior), ("d", 1.0)], key=lambda t: (-t[1], t[0]))
    assert ids(ans) == [cid for cid, _ in expected]
    assert ans["decisions"][[d["campaign_id"] for d in ans["decisions"]].index("c")]["pctr"] == pytest.approx(prior)
    assert ids(e.decide({"user_id": "u", "limit": 2})) == [cid for cid, _ in expected][:2]
    floored = e.decide({"user_id": "u", "floor_cpm": 4.99, "explain": True})
    assert set(ids(floored)) == {cid for cid, v in expected if v >= 4.99}
    assert floored["explain"]["rejected"]["d"] == "floor_cpm"


def test_status_and_flight_dates_in_campaign_time_zone(tx: Taxonomy) -> None:
    # 2026-11-24 00:30 in Shanghai is still 2026-11-23 in London
    ts = dt.datetime(2026, 11, 24, 0, 30, tzinfo=SH).isoformat()
    e = engine(tx, [
        camp("sh", start="2026-11-24"),
        camp("ldn", start="2026-11-24", timezone="Europe/London"),
        camp("paused", status="paused"),
        camp("ended", end="2026-11-23"),
    ])
    ans = e.decide({"user_id": "u", "ts": ts, "explain": True})
    assert ids(ans) == ["sh"]
    assert ans["explain"]["rejected"] == {"ldn": "flight", "paused": "status", "ended": "flight"}


def test_day_parting_uses_each_campaigns_time_zone(tx: Taxonomy) -> None:
    e = engine(tx, [
        camp("sh-9", targeting={"time": {"hours": [9]}}),
        camp("urumqi-7", timezone="Asia/Urumqi", targeting={"time": {"hours": [7]}}),  # UTC+6
    ])
    at = dt.datetime(2026, 11, 24, 9, 15, tzinfo=SH).isoformat()
    assert set(ids(e.decide({"user_id": "u", "ts": at}))) == {"sh-9", "urumqi-7"}
    later = dt.datetime(2026, 11, 24, 10, 15, tzinfo=SH).isoformat()
    assert e.decide({"user_id": "u", "ts": later, "explain": True})["explain"]["rejected"] == {
        "sh-9": "time", "urumqi-7": "time"}


@pytest.mark.parametrize("per, later, capped", [
    ("hour", dt.timedelta(minutes=30), True),  # same clock hour
    ("hour", dt.timedelta(hours=1), False),  # next hour: a new window
    ("day", dt.timedelta(hours=11), True),  # 23:00 the same local day
    ("day", dt.timedelta(hours=12, minutes=1), False),  # past local midnight
    ("week", dt.timedelta(days=5), True),  # Sunday of the same ISO week
    ("week", dt.timedelta(days=6), False),  # next Monday
], ids=["hour-same", "hour-next", "day-same", "day-next", "week-same", "week-next"])
def test_frequency_cap_windows(tx: Taxonomy, per: str, later: dt.timedelta, capped: bool) -> None:
    store = MemoryStore(clock=lambda: NOW)
    e = engine(tx, [camp("c", frequency_cap={"impressions": 2, "per": per})], store=store)
    start = dt.datetime.fromtimestamp(NOW, SH)
    res = e.record_impressions([{"user_id": "u", "campaign_id": "c", "ts": start.isoformat()}] * 2)
    assert res == {"accepted": 2, "errors": []}
    now = (start + later).isoformat()
    ans = e.decide({"user_id": "u", "ts": now, "explain": True})
    assert (ans["explain"]["rejected"].get("c") == "frequency_cap") is capped
    assert ids(e.decide({"user_id": "someone-else", "ts": now})) == ["c"]  # caps are per user


def test_daily_budget_and_even_pacing(tx: Taxonomy) -> None:
    e = engine(tx, [camp("c", bid={"cpm": 100}, daily_budget=10)])  # 0.1 per impression
    # noon: 50% of the day gone, pacing allows spend up to 55% of the budget
    e.record_impressions([{"user_id": f"u{i}", "campaign_id": "c"} for i in range(50)])
    assert ids(e.decide({"user_id": "x"})) == ["c"]  # 5.0 spent < 5.5
    e.record_impressions([{"user_id": f"v{i}", "campaign_id": "c", "price": 100} for i in range(6)])
    ans = e.decide({"user_id": "x", "explain": True})  # 5.6 spent: ahead of schedule
    assert ans["explain"]["rejected"] == {"c": "pacing"}
    evening = dt.datetime(2026, 11, 24, 23, 59, tzinfo=SH).isoformat()
    assert ids(e.decide({"user_id": "x", "ts": evening})) == ["c"]
    e.record_impressions([{"user_id": "w", "campaign_id": "c", "price": 4500}])  # +4.5: the 10 are spent
    assert e.decide({"user_id": "x", "ts": evening, "explain": True})["explain"]["rejected"] == {"c": "budget"}


def test_retargeting_any_none_and_advertiser_isolation(tx: Taxonomy) -> None:
    e = engine(tx, [
        camp("cart", advertiser="shop", targeting={"retargeting": {
            "any": [{"event": "add_to_cart", "within_days": 7}],
            "none": [{"event": "purchase", "within_days": 7}]}}),
    ])
    day = 86400
    res = e.record_events([
        {"user_id": "carted", "advertiser": "shop", "event": "add_to_cart", "ts": NOW - 2 * day},
        {"user_id": "bought", "advertiser": "shop", "event": "add_to_cart", "ts": NOW - 2 * day},
        {"user_id": "bought", "advertiser": "shop", "event": "purchase", "ts": NOW - day},
        {"user_id": "stale", "advertiser": "shop", "event": "add_to_cart", "ts": NOW - 8 * day},
        {"user_id": "x", "advertiser": "nobody-we-know", "event": "visit", "ts": NOW},  # refused by index
    ])
    assert res["accepted"] == 4 and [err["index"] for err in res["errors"]] == [4]
    assert ids(e.decide({"user_id": "carted"})) == ["cart"]
    for uid in ("bought", "stale", "never"):
        assert e.decide({"user_id": uid, "explain": True})["explain"]["rejected"] == {"cart": "retargeting"}


def test_rules_may_not_use_another_advertisers_events(tx: Taxonomy) -> None:
    with pytest.raises(RulesError) as ei:
        validate_campaigns([("t.yaml", [camp("c", targeting={"retargeting": {
            "any": [{"event": "visit", "within_days": 7, "advertiser": "rival"}]}})])], tx)
    assert ei.value.problems[0].path == "targeting.retargeting.any[0].advertiser"


class DownStore(MemoryStore):
    def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
        raise StoreUnavailable("connection refused")


def test_store_down_skips_only_campaigns_that_need_it(tx: Taxonomy) -> None:
    e = engine(tx, [
        camp("plain"),
        camp("capped", frequency_cap={"impressions": 1, "per": "day"}),
        camp("budgeted", daily_budget=100),
        camp("rt", targeting={"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}),
    ], store=DownStore())
    ans = e.decide({"user_id": "u", "explain": True})
    assert ids(ans) == ["plain"]
    assert ans["degraded"] == ["store_unavailable"]
    assert ans["explain"]["rejected"] == {"capped": "store", "budgeted": "store", "rt": "store"}
    assert e.stats["decide_degraded"] == 1
    batch = e.decide_batch([{"user_id": "u"}, {"user_id": "v"}])
    assert [ids(a) for a in batch] == [["plain"], ["plain"]]


def test_store_is_asked_once_per_batch(tx: Taxonomy) -> None:
    calls: list[int] = []

    class Counting(MemoryStore):
        def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
            calls.append(len(queries))
            return super().fetch(queries)

    e = engine(tx, [camp("capped", frequency_cap={"impressions": 1, "per": "day"})], store=Counting())
    answers = e.decide_batch([{"user_id": f"u{i}"} for i in range(7)] + [{"user_id": ""}])
    assert calls == [7]
    assert answers[-1]["error"]["path"] == "requests[7].user_id"
    assert all(ids(a) == ["capped"] for a in answers[:7])


def test_batch_pauses_the_collector_and_restores_it(tx: Taxonomy) -> None:
    """decide_batch runs without cyclic GC (its objects are acyclic) and leaves the collector
    as it found it: on stays on, even when the store fails; off (the application's choice) stays off."""
    seen: list[bool] = []

    class Watching(MemoryStore):
        def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
            seen.append(gc.isenabled())
            raise StoreUnavailable("down")

    e = engine(tx, [camp("capped", frequency_cap={"impressions": 1, "per": "day"})], store=Watching())
    assert gc.isenabled()
    answers = e.decide_batch([{"user_id": "u1"}, {"user_id": "u2"}])
    assert seen == [False] and gc.isenabled()
    assert all(a["degraded"] == ["store_unavailable"] and a["decisions"] == [] for a in answers)
    gc.disable()
    try:
        e.decide_batch([{"user_id": "u1"}])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_profiles_fill_what_the_request_lacks(tx: Taxonomy) -> None:
    class Profiles:
        def lookup(self, user_id: str) -> dict[str, Any] | None:
            return {"province": 440000, "city": 440300, "gender": "female", "age": 30,
                    "tags": ["investor"]} if user_id == "known" else None

    e = engine(tx, [camp("sz-women", targeting={"geo": ["深圳"], "gender": "female", "tags": ["investor"]})],
               profiles=Profiles())
    assert ids(e.decide({"user_id": "known"})) == ["sz-women"]
    assert ids(e.decide({"user_id": "known", "gender": "male"})) == []  # the request wins
    assert ids(e.decide({"user_id": "stranger"})) == []


def write_rules(root: Path, campaigns: Any) -> Path:
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    if not (root / "taxonomy").exists():
        shutil.copytree("rules/taxonomy", root / "taxonomy")
    (root / "campaigns" / "c.yaml").write_text(campaigns if isinstance(campaigns, str) else yaml.safe_dump(campaigns))
    return root


def test_reload_is_atomic(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "rules", [camp("one")])
    e = Engine.load(root, clock=lambda: NOW)
    v1 = e.index.version
    write_rules(root, [camp("one"), camp("two"), camp("bad", category="no-such-category")])
    with pytest.raises(RulesError):
        e.reload()
    assert e.index.version == v1 and ids(e.decide({"user_id": "u"})) == ["one"]
    write_rules(root, [camp("one"), camp("two")])
    out = e.reload()
    assert out["previous_version"] == v1 and out["campaigns"] == 2
    assert ids(e.decide({"user_id": "u"})) == ["one", "two"]


def test_shipped_rules_serve(tx: Taxonomy) -> None:
    e = Engine.load("rules", clock=lambda: NOW)
    assert e.index.n_campaigns >= 30
    ans = e.decide({"user_id": "u", "geo": {"city": "深圳"}, "gender": "male", "age": 30,
                    "tags": ["car_lover"], "explain": True})
    assert ans["decisions"] and set(ans["explain"]["eligible"]) >= set(ids(ans))


def test_head_only_ranking_equals_full_ranking(tx: Taxonomy) -> None:
    """Decide ranks only the head of many candidates; explain ranks them all. Same answers,
    ties (integer bids) and per-user checks (caps already reached) included."""
    import random

    from targeting.gen import generate_campaigns

    rng = random.Random(1)
    raw = generate_campaigns(1500, tx, seed=7)
    for c in raw:
        for k in ("daily_budget", "start", "end"):  # all serving today, budgets aside
            c.pop(k, None)
        (kind, amount), = c["bid"].items()
        c["bid"] = {kind: float(max(1, round(amount)))}  # integer bids: many ties
        if rng.random() < 0.9:  # most campaigns need per-user state: the head must widen
            c["frequency_cap"] = {"impressions": 1, "per": "week"}
    e = engine(tx, raw)
    capped = [c["id"] for c in raw if "frequency_cap" in c]
    seen = [{"user_id": f"u{i}", "campaign_id": cid} for i in range(5) for cid in capped]
    for start in range(0, len(seen), 5000):  # u0..u4 have used up every cap
        assert not e.record_impressions(seen[start:start + 5000])["errors"]
    cities = [c for p in tx.provinces for c in tx.cities_of(p)]
    heads = 0
    for i in range(60):
        req = {"user_id": f"u{i % 10}", "geo": {"city": rng.choice(cities)}, "age": rng.randint(18, 60),
               "gender": rng.choice(["male", "female"]), "tags": rng.sample(tx.tag_ids, 3), "limit": 10}
        fast, full = e.decide(req), e.decide({**req, "explain": True})
        assert fast["decisions"] == full["decisions"]
        assert fast["eligible"] >= full["eligible"]  # unchecked contenders are not known rejects
        heads += full["eligible"] > 64
    assert heads > 20  # many requests had more candidates than the head
