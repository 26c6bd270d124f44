"""Decide over a real redis-server: retargeting, caps and budgets shared through
Redis, and a slow or dead Redis degrading decisions instead of stalling them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from targeting import Engine
from targeting.compiler import compile_campaigns
from targeting.rules import validate_campaigns
from targeting.stores.breaker import CircuitBreaker
from targeting.stores.redis import RedisStore
from targeting.taxonomy import Taxonomy

pytestmark = pytest.mark.redis

HANG = 2.0  # a "did not stall" bound, far above the configured timeout; not a speed check
CAMPAIGNS: list[dict[str, Any]] = [
    {"id": "plain", "advertiser": "shop", "bid": {"cpm": 1}, "category": "retail"},
    {"id": "cart", "advertiser": "shop", "bid": {"cpm": 9}, "category": "retail",
     "targeting": {"retargeting": {"any": [{"event": "add_to_cart", "within_days": 7}],
                                   "none": [{"event": "purchase", "within_days": 7}]}}},
    {"id": "capped", "advertiser": "shop", "bid": {"cpm": 5}, "category": "retail",
     "frequency_cap": {"impressions": 1, "per": "day"}},
    {"id": "budgeted", "advertiser": "shop", "bid": {"cpm": 3}, "category": "retail", "daily_budget": 1000},
]


def make(tx: Taxonomy, store: RedisStore, **kw: Any) -> Engine:
    camps = validate_campaigns([("t.yaml", CAMPAIGNS)], tx)
    return Engine(tx, compile_campaigns(camps, tx, "v"), store=store, **kw)


def ids(a: dict[str, Any]) -> list[str]:
    return [d["campaign_id"] for d in a["decisions"]]


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


def test_two_engines_share_state_through_redis(tx: Taxonomy, fresh_redis: str) -> None:
    stores = [RedisStore.from_url(fresh_redis, timeout_ms=500) for _ in range(2)]
    try:
        check_shared(*(make(tx, s) for s in stores))
    finally:
        for s in stores:
            s.close()


def check_shared(a: Engine, b: Engine) -> None:
    now = time.time()
    assert a.record_events([{"user_id": "u", "advertiser": "shop", "event": "add_to_cart", "ts": now - 60}])[
        "accepted"] == 1
    assert ids(b.decide({"user_id": "u"})) == ["cart", "capped", "budgeted", "plain"]
    a.record_impressions([{"user_id": "u", "campaign_id": "capped"}])
    b.record_events([{"user_id": "u", "advertiser": "shop", "event": "purchase", "ts": now}])
    assert ids(b.decide({"user_id": "u"})) == ["budgeted", "plain"]  # engine b sees a's impression
    assert ids(a.decide({"user_id": "u"})) == ["budgeted", "plain"]  # and a sees b's purchase


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0


def test_slow_then_dead_redis_degrades_and_recovers(
    tx: Taxonomy, redis_server_factory: Callable[..., Any]
) -> None:
    server = redis_server_factory()
    store = RedisStore.from_url(server.url, timeout_ms=20,
                                breaker=CircuitBreaker(failure_threshold=3, cooldown_s=0.3))
    try:
        check_degrades(make(tx, store, budget_refresh_s=0.0, budget_max_stale_s=0.0), server, store)
    finally:
        store.close()


def check_degrades(e: Engine, server: Any, store: RedisStore) -> None:
    assert ids(e.decide({"user_id": "u"})) == ["capped", "budgeted", "plain"]

    server.pause()  # SIGSTOP: connections hang, as with an overloaded server
    try:
        for _ in range(5):
            answer, took = timed(lambda: e.decide({"user_id": "u", "explain": True}))
            assert took < HANG
            assert ids(answer) == ["plain"]
            assert answer["degraded"] == ["store_unavailable"]
            assert answer["explain"]["rejected"] == {"cart": "store", "capped": "store", "budgeted": "store"}
        assert store.breaker_state == "open"
    finally:
        server.resume()

    deadline = time.monotonic() + 10
    while ids(e.decide({"user_id": "u"})) != ["capped", "budgeted", "plain"]:
        assert time.monotonic() < deadline, "did not recover after Redis came back"
        time.sleep(0.1)
    assert e.stats["decide_degraded"] >= 5
