"""A slow or dead Redis costs a bounded wait, trips the breaker, and heals by itself.

Times are measured and printed but only checked against a generous "did not hang"
bound: this suite is about behaviour, the benchmark is about speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from targeting.stores import Counter, Event, StateQuery, StoreUnavailable
from targeting.stores.breaker import CircuitBreaker
from targeting.stores.redis import RedisStore

pytestmark = pytest.mark.redis

HANG = 2.0  # seconds; anything slower than this is a stall, whatever the timeout
QUERY = [StateQuery("u1", ("acme",), ("cap:c1:d",), ("spend:c1",))]


def unavailable_within(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    with pytest.raises(StoreUnavailable):
        call()
    elapsed = time.perf_counter() - t0
    assert elapsed < HANG
    return elapsed


def wait_until_recovered(store: RedisStore, limit_s: float = 10.0) -> int:
    """Fetch until it works; returns the attempts it took."""
    deadline = time.monotonic() + limit_s
    attempts = 0
    while True:
        attempts += 1
        try:
            store.fetch(QUERY)
            return attempts
        except StoreUnavailable:
            assert time.monotonic() < deadline, "store did not recover"
            time.sleep(0.05)


@pytest.fixture
def setup(redis_server_factory: Callable[..., Any]) -> Iterator[tuple[Any, RedisStore]]:
    server = redis_server_factory()
    # 50 ms instead of the 5 ms default: a loaded CI box must not time out when healthy
    store = RedisStore.from_url(
        server.url,
        timeout_ms=50,
        write_timeout_ms=200,
        breaker=CircuitBreaker(failure_threshold=3, cooldown_s=0.3),
    )
    now = time.time()
    store.add_events([Event("u1", "acme", "visit", now)], ttl=3600)
    store.add_counters([Counter("u1", "cap:c1:d", 1, 3600)])
    yield server, store
    store.close()


def test_paused_redis_times_out_opens_breaker_and_recovers(setup: tuple[Any, RedisStore]) -> None:
    server, store = setup
    (state,) = store.fetch(QUERY)
    assert state.user_counters == (1.0,)

    server.pause()  # SIGSTOP: connections accept, nobody answers — the "slow" Redis
    try:
        timings = [unavailable_within(lambda: store.fetch(QUERY)) for _ in range(3)]
        print(
            f"\nfetch against a stopped redis (timeout 50 ms): {[f'{t * 1000:.1f} ms' for t in timings]}"
        )
        assert store.breaker_state == "open"
        assert store.failures == 3

        short = unavailable_within(lambda: store.fetch(QUERY))
        print(f"short-circuited fetch: {short * 1e6:.0f} µs")
        assert store.short_circuits == 1
        # writes fail the same way, so callers can report them
        unavailable_within(lambda: store.add_counters([Counter("u1", "cap:c1:d", 1, 60)]))
        unavailable_within(
            lambda: store.add_events([Event("u1", "acme", "click", time.time())], 60)
        )
        assert store.short_circuits == 3
    finally:
        server.resume()

    attempts = wait_until_recovered(store)
    print(f"recovered after {attempts} attempt(s)")
    assert store.breaker_state == "closed"
    (state,) = store.fetch(QUERY)
    assert state.user_counters == (1.0,)  # the short-circuited write never happened


def test_killed_redis_fails_fast_and_a_restart_is_picked_up(setup: tuple[Any, RedisStore]) -> None:
    server, store = setup
    store.fetch(QUERY)
    server.kill()  # connection refused from now on
    for _ in range(3):
        unavailable_within(lambda: store.fetch(QUERY))
    assert store.breaker_state == "open"

    server.start()  # same port; data was not persisted
    wait_until_recovered(store)
    (state,) = store.fetch(QUERY)
    assert state.events == {} and state.user_counters == (0.0,)
    store.add_counters([Counter("u1", "cap:c1:d", 2, 60)])
    assert store.fetch(QUERY)[0].user_counters == (2.0,)


def test_exhausted_pool_does_not_queue_callers_forever(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    store = RedisStore.from_url(
        server.url, timeout_ms=50, pool_size=2, breaker=CircuitBreaker(failure_threshold=1000)
    )
    store.fetch(QUERY)
    server.pause()
    outcomes: list[tuple[str, float]] = []

    def call() -> None:
        t0 = time.perf_counter()
        try:
            store.fetch(QUERY)
            outcomes.append(("ok", time.perf_counter() - t0))
        except StoreUnavailable:
            outcomes.append(("unavailable", time.perf_counter() - t0))

    threads = [threading.Thread(target=call) for _ in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG * 5)
    finally:
        server.resume()
    assert len(outcomes) == 16
    assert {kind for kind, _ in outcomes} == {"unavailable"}
    assert max(t for _, t in outcomes) < HANG
    wait_until_recovered(store)
    store.close()
