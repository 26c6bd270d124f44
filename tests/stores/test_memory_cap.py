"""The in-memory store is bounded (issue 19): at ``max_users`` it evicts the least
recently written users, never per-campaign spend, and says so in the log."""

from __future__ import annotations

import logging
import pickle

import pytest

from targeting.stores import Counter, Event, MemoryStore, StateQuery

NOW = 1_800_000_000.0


def visit(user: str, ts: float = NOW) -> Event:
    return Event(user_id=user, advertiser="acme", event="visit", ts=ts)


def has_visit(store: MemoryStore, user: str) -> bool:
    return bool(store.fetch([StateQuery(user, advertisers=("acme",))])[0].events)


def test_the_cap_evicts_the_least_recently_written(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(clock=lambda: NOW, max_users=100)
    store.add_events([visit(f"u{i}") for i in range(100)], ttl=86400)
    store.add_counters([Counter("u0", "cap:x", 1, 3600)])  # u0 written again: now the most recent
    assert store.users == 100 and store.evicted == 0
    with caplog.at_level(logging.WARNING, logger="targeting.stores"):
        store.add_events([visit("new")], ttl=86400)
    assert store.users == 100 and store.evicted == 1  # 1% of the cap at once
    assert not has_visit(store, "u1")  # the least recently written
    assert has_visit(store, "u0") and has_visit(store, "new") and has_visit(store, "u2")
    assert "memory store full (max_users=100)" in caplog.text and "Redis" in caplog.text


def test_spend_is_never_evicted() -> None:
    store = MemoryStore(clock=lambda: NOW, max_users=10)
    store.add_counters([Counter("", "spend:c1:2026-11-24", 5.0, 86400)])
    store.add_events([visit(f"u{i}") for i in range(50)], ttl=86400)
    assert store.users == 10 and store.evicted == 40
    state = store.fetch([StateQuery("u49", shared_counters=("spend:c1:2026-11-24",))])[0]
    assert state.shared_counters == (5.0,)


def test_the_log_line_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(clock=lambda: NOW, max_users=10)
    with caplog.at_level(logging.WARNING, logger="targeting.stores"):
        store.add_events([visit(f"u{i}") for i in range(1000)], ttl=86400)
    assert store.evicted == 990
    assert caplog.text.count("memory store full") == 1  # not one line per eviction


def test_unbounded_and_bad_caps() -> None:
    store = MemoryStore(clock=lambda: NOW, max_users=None)
    store.add_events([visit(f"u{i}") for i in range(500)], ttl=86400)
    assert store.users == 500 and store.evicted == 0
    with pytest.raises(ValueError):
        MemoryStore(max_users=0)


def fixed_clock() -> float:
    return NOW


def test_the_cap_and_the_write_order_survive_pickling() -> None:
    store = MemoryStore(clock=fixed_clock, max_users=3)
    store.add_events([visit("a"), visit("b"), visit("c")], ttl=86400)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.max_users == 3 and copy.users == 3
    copy.add_events([visit("d")], ttl=86400)
    assert not has_visit(copy, "a") and has_visit(copy, "d")


def test_the_cap_is_set_by_the_store_url() -> None:
    from targeting.stores import open_store
    from targeting.stores.memory import DEFAULT_MAX_USERS

    assert open_store(None).max_users == DEFAULT_MAX_USERS  # type: ignore[attr-defined]
    assert open_store("memory://?max_users=5000").max_users == 5000  # type: ignore[attr-defined]
    assert open_store("memory://?max_users=0").max_users is None  # type: ignore[attr-defined]
    for bad in ("memory://?max_users=lots", "memory://?cap=5"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_listing_users_scans_in_chunks_and_misses_none() -> None:
    from targeting.stores.memory import SCAN_CHUNK

    store = MemoryStore(clock=lambda: NOW, max_users=None)
    n = 2 * SCAN_CHUNK + 5  # several chunks, the lock released between them
    store.add_events([visit(f"u{i}", NOW - (i % 2) * 10 * 86400) for i in range(n)], ttl=30 * 86400)
    recent = store.users_with_events("acme", {"visit"}, NOW - 86400)
    assert recent == {f"u{i}" for i in range(0, n, 2)}
