"""In-memory :class:`StateStore`: the default for one process, tests and demos.

**Bounded.** It holds at most ``max_users`` users (default :data:`DEFAULT_MAX_USERS`;
measured: ~1.5 KB per user with two events and one cap counter, so ~0.75 GB at the
default; ``memory://?max_users=N`` sets it from a store URL). Writing a new
user beyond the cap evicts the least recently *written* users (events and counters
alike, the oldest :data:`EVICT_SHARE` of the cap at once, so eviction is rare and
amortised) and logs a warning (at most one line a minute, with the running total).
An evicted user loses their retargeting events and frequency-cap counts: they can
see a capped ad again or drop out of a retargeting audience, as after those entries
expired. Per-campaign spend (the ``""`` book) is never evicted. Production traffic
belongs on Redis (``--store redis://``), which has its own ``maxmemory`` policy.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from .base import Counter, Event, StateQuery, UserState
from .snapshot import StateSnapshot

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("targeting.stores")
DEFAULT_MAX_USERS = 500_000
EVICT_SHARE = 0.01  # evict this share of the cap at once when it is reached
SCAN_CHUNK = 4096  # users_with_events holds the lock for this many users at a time


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
    """``max_users``: the cap (``None``: unbounded; see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 max_users: int | None = DEFAULT_MAX_USERS) -> None:
        if max_users is not None and max_users < 1:
            raise ValueError("max_users is a positive number of users, or None")
        self._clock = clock
        self._events: dict[str, _Book[tuple[str, str]]] = {}  # user -> (advertiser, event) -> latest ts
        self._counters: dict[str, _Book[str]] = {}  # user ("" for per-campaign counters) -> key -> value
        self._written: dict[str, None] = {}  # users, least recently written first
        self._once = _Book[str]()  # idempotency keys (claim/claimed/release) -> value
        self._lock = threading.Lock()
        self.max_users = max_users
        self.evicted = 0  # users evicted so far
        self._warned = -math.inf

    @property
    def users(self) -> int:
        return len(self._written)

    def _touch(self, user: str) -> None:
        """Mark ``user`` as just written (lock held); evict when a new user passes the cap."""
        if user == "":
            return
        written = self._written
        if user in written:
            del written[user]  # re-inserted last: dicts keep insertion order
        elif self.max_users is not None and len(written) >= self.max_users:
            self._evict(max(1, int(self.max_users * EVICT_SHARE)))
        written[user] = None

    def _evict(self, n: int) -> None:
        victims = [u for u, _ in zip(self._written, range(n))]
        for u in victims:
            del self._written[u]
            self._events.pop(u, None)
            self._counters.pop(u, None)
        self.evicted += len(victims)
        if time.monotonic() - self._warned > 60:
            self._warned = time.monotonic()
            log.warning("memory store full (max_users=%d): evicted the %d least recently written users "
                        "(%d so far); their retargeting events and cap counts are gone. Raise the cap "
                        "or run on Redis (--store redis://)", self.max_users, len(victims), self.evicted)

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
                self._touch(e.user_id)
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
                self._touch(c.user_id)
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
            return {"clock": self._clock, "max_users": self.max_users, "written": list(self._written),
                    "events": {u: b.items() for u, b in self._events.items()},
                    "counters": {u: b.items() for u, b in self._counters.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(clock=state["clock"], max_users=state.get("max_users"))  # type: ignore[misc]
        for mine, saved in ((self._events, state["events"]), (self._counters, state["counters"])):
            for user, entries in saved.items():
                book = mine[user] = _Book()
                for k, (value, expires) in entries.items():
                    book.put(k, value, expires)
        self._written = dict.fromkeys(state.get("written") or ((self._events.keys() | self._counters.keys()) - {""}))

    def users_with_events(self, advertiser: str, events: set[str], since: float) -> set[str]:
        """Users whose latest event of one of ``events`` for ``advertiser`` is at or after
        ``since`` and not expired. Optional ability (not in the StateStore Protocol): the
        audience index uses it, via ``getattr``, to count and export retargeting audiences."""
        now = self._clock()
        with self._lock:
            users = list(self._events)
        found: set[str] = set()
        for lo in range(0, len(users), SCAN_CHUNK):  # decide's fetch waits for one chunk at most
            with self._lock:
                for user in users[lo: lo + SCAN_CHUNK]:
                    book = self._events.get(user)
                    if book is not None and any(
                            (ts := book.live(now).get((advertiser, e))) is not None and ts >= since for e in events):
                        found.add(user)
        return found
