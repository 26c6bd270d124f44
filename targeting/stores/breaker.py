"""A circuit breaker: stop calling a dependency that keeps failing, probe it again later.

closed ──N consecutive failures──▶ open ──cool-down──▶ half_open (one probe)
  ▲                                  ▲                      │
  └──────────── probe succeeds ──────┼──── probe fails ─────┘
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Thread-safe. Counters (``failures``, ``short_circuits``, ``opened``) only grow,
    for Prometheus; ``state`` is ``"closed" | "open" | "half_open"``."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False
        self.consecutive_failures = 0
        self.failures = 0
        self.short_circuits = 0
        self.opened = 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """May a call go through now? False counts as a short circuit.

        After the cool-down exactly one caller gets through as the probe; the
        others keep short-circuiting until it reports back.
        """
        with self._lock:
            if self._state == CLOSED:
                return True
            if not self._probing and self._clock() - self._opened_at >= self.cooldown_s:
                self._state = HALF_OPEN
                self._probing = True
                return True
            self.short_circuits += 1
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state = CLOSED
            self._probing = False
            self.consecutive_failures = 0

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            self.consecutive_failures += 1
            if self._state == HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
                if self._state != OPEN:
                    self.opened += 1
                self._state = OPEN
                self._opened_at = self._clock()
                self._probing = False
