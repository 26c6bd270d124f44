"""Daily budgets and even pacing from a local mirror of today's spend.

Spend is per campaign, not per user, so every decision would otherwise ask the
store for the same numbers. The mirror fetches the spend of every budgeted
campaign in one query, at most every ``ttl`` seconds (and at once after this
process records impressions), and turns it into a bitset of clauses that may
not spend now. Overspend is bounded by ``ttl`` seconds of traffic from the
other processes sharing the store.

If the store is down, the last answer is used for ``max_stale`` seconds; after
that budgeted campaigns are skipped (fail closed: overspending someone's
money is worse than a lost impression) and decisions say ``degraded``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from .compiler import CampaignIndex
from .matcher import Moment
from .state import AHEAD_OF_PACE, OVER_BUDGET, pacing, spend_key
from .stores.base import StateQuery, StateStore, StoreUnavailable


class SpendMirror:
    def __init__(self, ttl: float = 1.0, max_stale: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_stale = max_stale
        self._clock = clock
        self._lock = threading.Lock()
        # (index version, day labels per zone) -> (fetched at, spend float64[len(index.budgeted)])
        self._spend: dict[tuple[str, tuple[str, ...]], tuple[float, np.ndarray]] = {}
        self._blocked: dict[tuple[object, ...], dict[int, str]] = {}

    def add(self, index: CampaignIndex, campaign: int, day: str, cost: float) -> None:
        """Spend this process just recorded (and wrote to the store): applied to the
        mirror at once, so our own impressions never wait for a refresh."""
        pos = int(np.searchsorted(index.budgeted, campaign))
        if pos >= index.budgeted.size or index.budgeted[pos] != campaign:
            return
        zone = int(index.zone_of[campaign])
        with self._lock:
            for (version, days), (_, spend) in self._spend.items():
                if version == index.version and days[zone] == day:
                    spend[pos] += cost
            self._blocked.clear()

    def blocked(self, index: CampaignIndex, m: Moment, store: StateStore) -> dict[int, str]:
        """Campaign positions that may not spend at ``m``, with the reason: ``budget``,
        ``pacing``, or ``store`` when it failed closed. The same dict object is handed
        out until the answer changes, so callers may cache what they derive from it."""
        if not index.budgeted.size:
            return {}
        days = m.day_labels
        key = (index.version, days)
        now = self._clock()
        hit = self._spend.get(key)  # a dict read is atomic; writers hold the lock
        if hit is None or now - hit[0] > self.ttl:
            try:
                spend = self._fetch(index, days, store)
                hit = (now, spend)
                with self._lock:
                    if len(self._spend) > 64:
                        self._spend.clear()
                        self._blocked.clear()
                    self._spend[key] = hit
            except StoreUnavailable:
                if hit is None or now - hit[0] > self.max_stale:
                    return self._all_blocked(index)
                # within max_stale: keep deciding on the last known spend
        bkey = (key, hit[0], int(m.ts // 60))
        cached = self._blocked.get(bkey)
        if cached is None:
            cached = self._compute(index, m, hit[1])
            with self._lock:
                if len(self._blocked) > 256:  # one entry per refresh and minute: keep it bounded
                    self._blocked.clear()
                self._blocked[bkey] = cached
        return cached

    def _fetch(self, index: CampaignIndex, days: tuple[str, ...], store: StateStore) -> np.ndarray:
        zone_of = index.zone_of[index.budgeted].tolist()
        keys = tuple(spend_key(index.ids[ci], days[z]) for ci, z in zip(index.budgeted.tolist(), zone_of))
        state = store.fetch([StateQuery("", (), (), keys)])[0]
        return np.asarray(state.shared_counters, dtype=np.float64)

    def _compute(self, index: CampaignIndex, m: Moment, spent: np.ndarray) -> dict[int, str]:
        b = index.budgeted
        budget = index.budget[b]
        verdict = pacing(spent, budget, np.asarray(m.day_fraction)[index.zone_of[b]])
        reasons = dict.fromkeys(b[verdict == OVER_BUDGET].tolist(), "budget")
        reasons.update(dict.fromkeys(b[verdict == AHEAD_OF_PACE].tolist(), "pacing"))
        return reasons

    def _all_blocked(self, index: CampaignIndex) -> dict[int, str]:
        """Every budgeted campaign, failed closed (the same object while the outage lasts)."""
        key = (index.version, "store")
        hit = self._blocked.get(key)
        if hit is None:
            hit = dict.fromkeys(index.budgeted.tolist(), "store")
            with self._lock:
                self._blocked[key] = hit
        return hit


__all__ = ["SpendMirror"]
