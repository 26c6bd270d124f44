"""In-memory :class:`StateStore`: the default for one process, tests and demos."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from .base import Counter, Event, StateQuery, UserState
from .snapshot import StateSnapshot

K = TypeVar("K", bound=Hashable)


class _Book(Generic[K]):
    """One user's entries of one kind (events or counters): values, when each expires,
    and the soonest of those, so reading an unexpired book is one comparison and
    expired entries are dropped the first time they are seen (no scan, no leak)."""

    __slots__ = ("expires", "soonest", "values")

    def __init__(self) -> None:
        self.values: dict[K, float] = {}
        self.expires: dict[K, float] = {}
        self.soonest = math.inf

    def live(self, now: float) -> dict[K, float]:
        """The unexpired values (the book's own dict: callers only read it)."""
        if self.soonest <= now:
            for k in [k for k, e in self.expires.items() if e <= now]:
                del self.values[k], self.expires[k]
            self.soonest = min(self.expires.values(), default=math.inf)
        return self.values

    def put(self, key: K, value: float, expires: float) -> None:
        self.values[key] = value
        self.expires[key] = expires
        self.soonest = min(self.soonest, expires)

    def items(self) -> dict[K, tuple[float, float]]:
        return {k: (v, self.expires[k]) for k, v in self.values.items()}


_EMPTY: dict[Any, float] = {}


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._events: dict[str, _Book[tuple[str, str]]] = {}  # user -> (advertiser, event) -> latest ts
        self._counters: dict[str, _Book[str]] = {}  # user ("" for per-campaign counters) -> key -> value
        self._once = _Book[str]()  # idempotency keys (claim/claimed/release) -> value
        self._lock = threading.Lock()

    def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
        now = self._clock()
        out = []
        events_of, counters_of = self._events.get, self._counters.get
        with self._lock:
            book = counters_of("")
            shared = book.live(now) if book is not None else _EMPTY
            for uid, advertisers, user_keys, shared_keys in queries:
                events: dict[tuple[str, str], float] = {}
                if advertisers and (seen := events_of(uid)) is not None:
                    events = {k: ts for k, ts in seen.live(now).items() if k[0] in advertisers}
                counters = (mine.live(now) if user_keys and (mine := counters_of(uid)) is not None else _EMPTY)
                out.append(UserState(events, tuple([counters.get(k, 0.0) for k in user_keys]),
                                     tuple([shared.get(k, 0.0) for k in shared_keys])))
        return out

    def snapshot(self) -> StateSnapshot:
        """A copy of every unexpired event and counter as of now, for batch scoring
        (see :mod:`targeting.stores.snapshot`)."""
        now = self._clock()
        with self._lock:
            users = sorted((self._events.keys() | self._counters.keys()) - {""})
            none = _Book[Any]()
            events = [dict(self._events.get(u, none).live(now)) for u in users]
            counters = [dict(self._counters.get(u, none).live(now)) for u in users]
            shared = dict(self._counters.get("", none).live(now))
        return StateSnapshot(users, events, counters, shared, taken=now)

    def add_events(self, events: Sequence[Event], ttl: int) -> None:
        with self._lock:
            for e in events:
                book = self._events.get(e.user_id)
                if book is None:
                    book = self._events[e.user_id] = _Book()
                key = (e.advertiser, e.event)
                old = book.values.get(key)
                if old is None or old < e.ts:
                    book.put(key, e.ts, e.ts + ttl)

    def add_counters(self, counters: Sequence[Counter]) -> None:
        now = self._clock()
        with self._lock:
            for c in counters:
                book = self._counters.get(c.user_id)
                if book is None:
                    book = self._counters[c.user_id] = _Book()
                book.put(c.key, book.live(now).get(c.key, 0.0) + c.amount, now + c.ttl)

    def claim(self, keys: Sequence[str], values: Sequence[float], ttl: int) -> list[bool]:
        """Set each key to its value unless it is set already; True where this call set it.
        Optional ability (not in the Protocol): impressions and clicks counted once
        (:mod:`targeting.delivery`). A key repeated within one call is claimed once."""
        now = self._clock()
        out = []
        with self._lock:
            live = self._once.live(now)
            for k, v in zip(keys, values):
                fresh = k not in live
                if fresh:
                    self._once.put(k, v, now + ttl)
                out.append(fresh)
        return out

    def claimed(self, keys: Sequence[str]) -> list[float | None]:
        """The value of each claimed key, ``None`` where unclaimed or expired."""
        with self._lock:
            live = self._once.live(self._clock())
            return [live.get(k) for k in keys]

    def release(self, keys: Sequence[str]) -> None:
        """Forget claims (a write that followed them failed, so a retry must count)."""
        with self._lock:
            for k in keys:
                self._once.values.pop(k, None)
                self._once.expires.pop(k, None)

    def __getstate__(self) -> dict[str, object]:
        """Picklable (e.g. shipped to Dask workers for batch scoring): a consistent copy."""
        with self._lock:
            return {"clock": self._clock, "events": {u: b.items() for u, b in self._events.items()},
                    "counters": {u: b.items() for u, b in self._counters.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(clock=state["clock"])  # type: ignore[misc]
        for mine, saved in ((self._events, state["events"]), (self._counters, state["counters"])):
            for user, entries in saved.items():
                book = mine[user] = _Book()
                for k, (value, expires) in entries.items():
                    book.put(k, value, expires)

    def users_with_events(self, advertiser: str, events: set[str], since: float) -> set[str]:
        """Users whose latest event of one of ``events`` for ``advertiser`` is at or after
        ``since`` and not expired. Optional ability (not in the StateStore Protocol): the
        audience index uses it, via ``getattr``, to count and export retargeting audiences."""
        now = self._clock()
        with self._lock:
            return {
                user
                for user, book in self._events.items()
                if any((ts := book.live(now).get((advertiser, e))) is not None and ts >= since for e in events)
            }
