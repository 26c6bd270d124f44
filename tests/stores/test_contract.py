"""One contract, every backend: what the engine may rely on from a StateStore."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from targeting.stores import Counter, Event, MemoryStore, StateQuery, StateStore
from targeting.stores.redis import RedisStore

DAY = 86_400


@dataclass
class Backend:
    store: StateStore
    wait: Callable[[float], None]  # let `seconds` pass for the store (fake clock or real sleep)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis)], ids=["memory", "redis"]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        yield Backend(MemoryStore(clock=clock), clock.advance)
        return
    store = RedisStore.from_url(request.getfixturevalue("fresh_redis"), timeout_ms=1000)
    yield Backend(store, time.sleep)
    store.close()


def ev(user: str, adv: str, event: str, ts: float) -> Event:
    return Event(user_id=user, advertiser=adv, event=event, ts=ts)


def test_satisfies_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, StateStore)


def test_empty_queries(backend: Backend) -> None:
    store = backend.store
    assert store.fetch([]) == []
    store.add_events([], ttl=DAY)
    store.add_counters([])
    # a query that asks for nothing, and one for a user nobody has seen
    nothing, unknown = store.fetch(
        [StateQuery("u1"), StateQuery("ghost", ("acme",), ("cap:c1:d:2026-11-24",), ("spend:c1",))]
    )
    assert (nothing.events, nothing.user_counters, nothing.shared_counters) == ({}, (), ())
    assert unknown.events == {}
    assert unknown.user_counters == (0.0,)
    assert unknown.shared_counters == (0.0,)


def test_fetch_answers_line_up_with_queries(backend: Backend) -> None:
    now = time.time()
    store = backend.store
    store.add_events([ev("u1", "acme", "visit", now - 10), ev("u2", "acme", "click", now - 5)], DAY)
    store.add_counters(
        [
            Counter("u1", "cap:c1:d", 1, DAY),
            Counter("u2", "cap:c1:d", 2, DAY),
            Counter("u2", "cap:c2:d", 5, DAY),
            Counter("", "spend:c1", 0.25, DAY),
        ]
    )
    answers = store.fetch(
        [
            StateQuery("u2", ("acme",), ("cap:c2:d", "cap:c1:d", "cap:none"), ("spend:c1",)),
            StateQuery("u1", ("acme",), ("cap:c1:d",), ("spend:none", "spend:c1")),
            StateQuery("u2", (), ("cap:c1:d",)),  # same user twice in one batch
        ]
    )
    assert len(answers) == 3
    assert answers[0].events == {("acme", "click"): now - 5}
    assert answers[0].user_counters == (5.0, 2.0, 0.0)
    assert answers[0].shared_counters == (0.25,)
    assert answers[1].events == {("acme", "visit"): now - 10}
    assert answers[1].user_counters == (1.0,)
    assert answers[1].shared_counters == (0.0, 0.25)
    assert answers[2].events == {}  # no advertisers asked for
    assert answers[2].user_counters == (2.0,)


def test_latest_ts_wins_whatever_the_arrival_order(backend: Backend) -> None:
    now = time.time()
    store = backend.store
    store.add_events([ev("u1", "acme", "visit", now - 100)], DAY)
    store.add_events([ev("u1", "acme", "visit", now - 300)], DAY)  # older, arrives later
    store.add_events(
        [ev("u1", "acme", "visit", now - 50), ev("u1", "acme", "visit", now - 70)], DAY
    )  # two in one batch
    store.add_events([ev("u1", "acme", "purchase", now - 400)], DAY)  # other event types separate
    (state,) = store.fetch([StateQuery("u1", ("acme",))])
    assert state.events == {("acme", "visit"): now - 50, ("acme", "purchase"): now - 400}


def test_resending_events_is_idempotent(backend: Backend) -> None:
    now = time.time()
    batch = [ev("u1", "acme", "visit", now - 1), ev("u1", "acme", "add_to_cart", now - 2)]
    backend.store.add_events(batch, DAY)
    first = backend.store.fetch([StateQuery("u1", ("acme",))])
    for _ in range(3):
        backend.store.add_events(batch, DAY)
    assert backend.store.fetch([StateQuery("u1", ("acme",))]) == first


def test_advertisers_are_isolated(backend: Backend) -> None:
    now = time.time()
    store = backend.store
    store.add_events(
        [ev("u1", "acme", "purchase", now - 1), ev("u1", "globex", "visit", now - 2)], DAY
    )
    # ids that would collide under a naive "adv:user" join
    store.add_events([ev("b:u1", "a", "visit", now - 3)], DAY)
    b, a, both, tricky = store.fetch(
        [
            StateQuery("u1", ("globex",)),
            StateQuery("u1", ("acme",)),
            StateQuery("u1", ("acme", "globex", "initech")),
            StateQuery("u1", ("a:b",)),
        ]
    )
    assert b.events == {("globex", "visit"): now - 2}
    assert a.events == {("acme", "purchase"): now - 1}
    assert both.events == {("acme", "purchase"): now - 1, ("globex", "visit"): now - 2}
    assert tricky.events == {}


def test_events_expire_ttl_after_their_ts(backend: Backend) -> None:
    now = time.time()
    store = backend.store
    store.add_events([ev("u1", "acme", "visit", now), ev("u1", "acme", "click", now - 2 * DAY)], 2)
    store.add_events([ev("u1", "acme", "purchase", now)], DAY)
    (state,) = store.fetch([StateQuery("u1", ("acme",))])
    assert state.events == {("acme", "visit"): now, ("acme", "purchase"): now}  # click born dead
    backend.wait(2.2)
    (state,) = store.fetch([StateQuery("u1", ("acme",))])
    assert state.events == {("acme", "purchase"): now}  # the long-lived field survives


def test_counters_add_and_expire(backend: Backend) -> None:
    store = backend.store
    store.add_counters([Counter("u1", "cap:c1:h", 1, 1), Counter("u1", "cap:c1:d", 1, DAY)])
    store.add_counters([Counter("u1", "cap:c1:h", 1, 1), Counter("", "spend:c1", 0.5, DAY)])
    store.add_counters([Counter("", "spend:c1", -0.125, DAY)])  # refunds are negative amounts
    q = StateQuery("u1", (), ("cap:c1:h", "cap:c1:d"), ("spend:c1",))
    (state,) = store.fetch([q])
    assert state.user_counters == (2.0, 1.0)
    assert state.shared_counters == (0.375,)
    backend.wait(1.2)
    (state,) = store.fetch([q])
    assert state.user_counters == (0.0, 1.0)  # the hourly-like counter is gone, the daily stays
    store.add_counters([Counter("u1", "cap:c1:h", 1, 1)])
    (state,) = store.fetch([q])
    assert state.user_counters == (1.0, 1.0)  # restarts from zero


def test_counters_are_atomic_under_threads(backend: Backend) -> None:
    store = backend.store
    n_threads, n_rounds = 8, 50

    def work() -> None:
        for _ in range(n_rounds):
            store.add_counters(
                [Counter("u1", "cap:c1:d", 1, DAY), Counter("", "spend:c1", 0.5, DAY)]
            )

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (state,) = store.fetch([StateQuery("u1", (), ("cap:c1:d",), ("spend:c1",))])
    assert state.user_counters == (n_threads * n_rounds,)
    assert state.shared_counters == (n_threads * n_rounds * 0.5,)


def test_concurrent_event_writers_keep_the_maximum(backend: Backend) -> None:
    now = time.time()
    store = backend.store

    def work(offset: int) -> None:
        for i in range(50):
            store.add_events([ev("u1", "acme", "visit", now - 1000 + offset + 8 * i)], DAY)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (state,) = store.fetch([StateQuery("u1", ("acme",))])
    assert state.events == {("acme", "visit"): now - 1000 + 7 + 8 * 49}


def test_large_batches_span_several_pipelines(backend: Backend) -> None:
    now = time.time()
    events = [ev(f"u{i}", "acme", "visit", now - i % 100) for i in range(45_000)]
    backend.store.add_events(events, DAY)
    counters = [Counter(f"u{i % 100}", "cap", 1, DAY) for i in range(5_000)]
    backend.store.add_counters(counters)
    answers = backend.store.fetch([StateQuery(f"u{i}", ("acme",), ("cap",)) for i in (0, 44_999)])
    assert answers[0].events == {("acme", "visit"): now}
    assert answers[1].events == {("acme", "visit"): now - 99}
    assert answers[0].user_counters == (50.0,)


def test_users_with_events_optional_ability(backend: Backend) -> None:
    """Reach and export enumerate an advertiser's retargeting audience; ids with
    glob and separator characters are matched literally, other advertisers never."""
    store = backend.store
    now = time.time()
    store.add_events(
        [
            ev("u1", "acme", "visit", now - 100),
            ev("u:2*", "acme", "add_to_cart", now - 100),  # needs escaping both in keys and SCAN
            ev("old", "acme", "visit", now - 10 * DAY),
            ev("u3", "acme*", "visit", now),  # a glob-looking advertiser is not "acme"
            ev("u4", "rival", "visit", now),
        ],
        DAY * 30,
    )
    find = store.users_with_events
    assert find("acme", {"visit", "add_to_cart"}, now - DAY) == {"u1", "u:2*"}
    assert find("acme", {"visit"}, now - 30 * DAY) == {"u1", "old"}
    assert find("acme", {"purchase"}, 0) == set()
    assert find("acme*", {"visit"}, 0) == {"u3"}


def test_snapshot_optional_ability() -> None:
    """What the batch scorer reads instead of the store when a store can take it: the
    unexpired events and counters as of the call, unaffected by later writes."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    now = clock.now
    store.add_events([ev("u1", "acme", "visit", now), ev("u1", "rival", "click", now - 2 * DAY)], DAY)
    store.add_events([ev("u2", "acme", "purchase", now)], 2)
    store.add_counters([Counter("u1", "cap:c1:h", 1, 1), Counter("u1", "cap:c1:d", 2, DAY),
                        Counter("", "spend:c1", 0.5, DAY), Counter("u3", "cap:c2:h", 1, 1)])
    snap = store.snapshot()
    assert snap.users == ["u1", "u2", "u3"]  # "" holds per-campaign counters, not a user
    assert snap.events == [{("acme", "visit"): now}, {("acme", "purchase"): now}, {}]  # rival's: born dead
    assert snap.counters == [{"cap:c1:h": 1.0, "cap:c1:d": 2.0}, {}, {"cap:c2:h": 1.0}]
    assert snap.shared == {"spend:c1": 0.5}
    q = [StateQuery("u1", ("acme", "rival"), ("cap:c1:h", "cap:c1:d"), ("spend:c1",)), StateQuery("nobody")]
    assert snap.fetch(q) == store.fetch(q)
    store.add_counters([Counter("u1", "cap:c1:d", 5, DAY)])
    assert snap.counters[0]["cap:c1:d"] == 2.0  # a copy
    clock.advance(2.5)
    later = store.snapshot()
    assert later.users == ["u1", "u2", "u3"]
    assert later.events == [{("acme", "visit"): now}, {}, {}] and later.counters == [{"cap:c1:d": 7.0}, {}, {}]
    with pytest.raises(TypeError):
        snap.add_counters([Counter("u1", "cap:c1:d", 1, DAY)])


@pytest.mark.parametrize("n", [3, 20_000])  # dict lookups below ARROW_FROM ids, one Arrow hash join above
def test_snapshot_positions_of_user_ids(n: int) -> None:
    import numpy as np

    from targeting.stores.snapshot import ARROW_FROM, StateSnapshot

    users = [f"u{k}" for k in range(0, 4000, 2)]
    snap = StateSnapshot(users, [{}] * len(users), [{}] * len(users), {}, taken=0.0)
    ids = np.array([f"u{k % 4001}" for k in range(n)], dtype=object)
    want = [j // 2 if j % 2 == 0 and j < 4000 else -1 for j in (k % 4001 for k in range(n))]  # u<j> is users[j // 2]
    assert (n >= ARROW_FROM) == (n == 20_000)
    assert snap.positions(ids).tolist() == want
    assert StateSnapshot([], [], [], {}, taken=0.0).positions(ids).tolist() == [-1] * n


def test_snapshot_tables_and_spend_by_campaign() -> None:
    """The integer-coded tables the batch scorer searches: every cap counter of a campaign the
    index has (others and non-cap keys left out), who has events of which listed advertiser,
    and a day's spend per campaign."""
    import numpy as np

    from targeting.stores.snapshot import StateSnapshot

    class Index:  # what the tables read of a CampaignIndex
        def __init__(self) -> None:
            self.position = {"c0": 0, "c1": 1, "c2": 2}
            self.n_campaigns = 3

    users = ["a", "b", "c", "d"]
    counters = [{"cap:c1:h1": 2.0, "cap:zz:h1": 9.0, "cap:c0:d1": 1.0}, {}, {"cap:c1:h1": 3.0, "other": 4.0},
                {"cap:c2:w1": 5.0}]
    events = [{("acme", "visit"): 1.0, ("rival", "click"): 2.0}, {}, {("ghost", "visit"): 1.0}, {("rival", "buy"): 3.0}]
    snap = StateSnapshot(users, events, counters, {"spend:c0:d1": 7.5, "spend:c2:d1": 1.0}, taken=0.0)
    index = Index()
    t = snap.tables(index, ["acme", "rival"])
    got = {}
    for code, value in zip(t.codes.tolist(), t.values.tolist()):
        rest, label = divmod(code, len(t.labels))
        got[(users[rest // 3], rest % 3, {v: k for k, v in t.labels.items()}[label])] = value
    assert got == {("a", 1, "h1"): 2.0, ("a", 0, "d1"): 1.0, ("c", 1, "h1"): 3.0, ("d", 2, "w1"): 5.0}
    assert list(t.codes) == sorted(t.codes)
    assert t.seen.tolist() == [0 * 2 + 0, 0 * 2 + 1, 3 * 2 + 1]  # user × n_advertisers + advertiser
    assert snap.shared_by_campaign(index, np.array(["spend:c0:", "spend:c1:", "spend:c2:"], dtype=object),
                                   "d1").tolist() == [7.5, 0.0, 1.0]
