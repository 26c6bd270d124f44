"""CircuitBreaker transitions, on an injected clock."""

from __future__ import annotations

from targeting.stores.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(failure_threshold=3, cooldown_s=1.0, clock=Clock())
    for _ in range(2):
        b.record_failure()
    b.record_success()  # a success in between resets the streak
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open"
    assert (b.failures, b.opened) == (5, 1)


def test_short_circuits_then_lets_one_probe_through_after_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1.0, clock=clock)
    b.record_failure()
    assert not b.allow() and not b.allow()
    assert b.short_circuits == 2
    clock.now = 1.0
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else waits for the probe's verdict
    b.record_success()
    assert b.state == "closed" and b.allow()
    assert b.short_circuits == 3


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.now = 1.5
    assert b.allow()
    b.record_failure()  # one failure is enough when half open
    assert b.state == "open"
    clock.now = 2.0
    assert not b.allow()  # the cool-down restarted at 1.5
    clock.now = 2.5
    assert b.allow()
    assert b.opened == 2
