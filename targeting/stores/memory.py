"""In-memory :class:`StateStore`: the default for one process, tests and demos."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .base import Counter, Event, StateQuery, UserState


class MemoryStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._events: dict[str, dict[tuple[str, str], tuple[float, float]]] = {}  # user -> key -> (ts, expires)
        self._counters: dict[tuple[str, str], tuple[float, float]] = {}  # (user, key) -> (value, expires)
        self._lock = threading.Lock()

    def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
        now = self._clock()
        out = []
        get = self._get
        with self._lock:
            for uid, advertisers, user_keys, shared_keys in queries:
                mine = self._events.get(uid) if advertisers else None
                events = {k: ts for k, (ts, exp) in mine.items() if k[0] in advertisers and exp > now} if mine else {}
                out.append(UserState(events, tuple([get((uid, k), now) for k in user_keys]),
                                     tuple([get(("", k), now) for k in shared_keys])))
        return out

    def add_events(self, events: Sequence[Event], ttl: int) -> None:
        with self._lock:
            for e in events:
                mine = self._events.setdefault(e.user_id, {})
                key = (e.advertiser, e.event)
                if key not in mine or mine[key][0] < e.ts:
                    mine[key] = (e.ts, e.ts + ttl)

    def add_counters(self, counters: Sequence[Counter]) -> None:
        now = self._clock()
        with self._lock:
            for c in counters:
                k = (c.user_id, c.key)
                value = self._get(k, now) + c.amount
                self._counters[k] = (value, now + c.ttl)

    def __getstate__(self) -> dict[str, object]:
        """Picklable (e.g. shipped to Dask workers for batch scoring): a consistent copy."""
        with self._lock:
            return {"clock": self._clock, "events": {u: dict(m) for u, m in self._events.items()},
                    "counters": dict(self._counters)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(clock=state["clock"])  # type: ignore[misc, arg-type]
        self._events = state["events"]  # type: ignore[assignment]
        self._counters = state["counters"]  # type: ignore[assignment]

    def _get(self, k: tuple[str, str], now: float) -> float:
        v = self._counters.get(k)
        return v[0] if v is not None and v[1] > now else 0.0

    def users_with_events(self, advertiser: str, events: set[str], since: float) -> set[str]:
        """Users whose latest event of one of ``events`` for ``advertiser`` is at or after
        ``since`` and not expired. Optional ability (not in the StateStore Protocol): the
        audience index uses it, via ``getattr``, to count and export retargeting audiences."""
        now = self._clock()
        with self._lock:
            return {
                user
                for user, mine in self._events.items()
                if any(
                    (v := mine.get((advertiser, e))) is not None and v[0] >= since and v[1] > now
                    for e in events
                )
            }
