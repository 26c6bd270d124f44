"""Hypothesis drives MemoryStore (the reference) and RedisStore with the same random
operations and compares everything they know after every step."""

from __future__ import annotations

import time

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from targeting.stores import Counter, Event, MemoryStore, StateQuery
from targeting.stores.redis import RedisStore

pytestmark = pytest.mark.redis

USERS = ["u1", "u2", "u:3", "用户"]
ADVERTISERS = ["acme", "globex", "a:b"]
EVENT_TYPES = ["visit", "click", "add_to_cart", "purchase"]
COUNTER_KEYS = ["cap:c1:d", "cap:c1:h", "spend:c1", "cap:c2:w"]
# ts = start - age - fraction; with these ages and ttls every entry is either clearly
# alive or clearly expired (a margin of >= 38 s), so a slow step cannot flip the answer.
AGES = [0, 10, 100, 1_000, 100_000]
TTLS = [50, 500, 86_400]

events = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(ADVERTISERS),
        st.sampled_from(EVENT_TYPES),
        st.sampled_from(AGES),
        st.integers(0, 3).map(lambda q: q / 4),  # exact binary fractions, and ties
    ),
    max_size=10,
)
counters = st.lists(
    st.tuples(
        st.sampled_from(["", *USERS]),
        st.sampled_from(COUNTER_KEYS),
        st.integers(-8, 40).map(lambda q: q / 4),  # quarters: float sums stay exact
        st.sampled_from([0, 3_600]),  # 0 = gone at once, in both stores
    ),
    max_size=10,
)
queries = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.lists(st.sampled_from(ADVERTISERS), max_size=4),
        st.lists(st.sampled_from(COUNTER_KEYS), max_size=4),
        st.lists(st.sampled_from(COUNTER_KEYS), max_size=4),
    ),
    max_size=4,
)


class StoresAgree(RuleBasedStateMachine):
    """Memory is the reference; one Redis database is flushed per example."""

    def __init__(self, url: str) -> None:
        super().__init__()
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        self.memory = MemoryStore()
        self.redis = RedisStore.from_url(url, timeout_ms=1000)
        self.start = time.time()
        self.ttl = 86_400

    @initialize(ttl=st.sampled_from(TTLS))
    def pick_ttl(self, ttl: int) -> None:
        self.ttl = ttl  # the engine uses one ttl (its longest window); so do we

    @rule(batch=events)
    def add_events(self, batch: list[tuple[str, str, str, int, float]]) -> None:
        es = [Event(u, a, e, self.start - age - frac) for u, a, e, age, frac in batch]
        self.memory.add_events(es, self.ttl)
        self.redis.add_events(es, self.ttl)

    @rule(batch=counters)
    def add_counters(self, batch: list[tuple[str, str, float, int]]) -> None:
        cs = [Counter(u, k, amount, ttl) for u, k, amount, ttl in batch]
        self.memory.add_counters(cs)
        self.redis.add_counters(cs)

    @rule(batch=queries)
    def fetch(self, batch: list[tuple[str, list[str], list[str], list[str]]]) -> None:
        qs = [StateQuery(u, tuple(a), tuple(c), tuple(s)) for u, a, c, s in batch]
        assert self.redis.fetch(qs) == self.memory.fetch(qs)

    @invariant()
    def everything_agrees(self) -> None:
        qs = [StateQuery(u, tuple(ADVERTISERS), tuple(COUNTER_KEYS)) for u in USERS]
        qs.append(StateQuery("", (), (), tuple(COUNTER_KEYS)))
        assert self.redis.fetch(qs) == self.memory.fetch(qs)

    def teardown(self) -> None:
        self.redis.close()


def test_redis_store_behaves_like_memory_store(redis_url: str) -> None:
    # shorter runs, more of them: bugs here show within a few steps
    run_state_machine_as_test(
        lambda: StoresAgree(redis_url),
        settings=settings(stateful_step_count=20, suppress_health_check=[HealthCheck.too_slow]),
    )
