"""The state-store interface: retargeting events, frequency counters, spend.

Everything that changes per user or per campaign while serving lives behind
these three methods. Keys are built by the engine (see ``targeting.state``), so
a backend only stores and counts; it knows nothing of campaigns or windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable


@dataclass(frozen=True)
class Event:
    """A retargeting event. ``ts`` is epoch seconds (UTC)."""

    user_id: str
    advertiser: str
    event: str  # visit | click | add_to_cart | purchase
    ts: float


@dataclass(frozen=True)
class Counter:
    """Add ``amount`` to counter ``key`` of a user (or ``user_id=""`` for per-campaign
    counters such as spend), expiring ``ttl`` seconds after the write."""

    user_id: str
    key: str
    amount: float
    ttl: int


class StateQuery(NamedTuple):
    """What one decision needs to know.

    ``advertisers``: whose events of this user are needed; ``user_counters``:
    keys of this user's counters (frequency caps); ``shared_counters``:
    per-campaign counter keys (spend today). Named tuples, this and
    :class:`UserState`: one of each is built per decision.
    """

    user_id: str
    advertisers: tuple[str, ...] = ()
    user_counters: tuple[str, ...] = ()
    shared_counters: tuple[str, ...] = ()


class UserState(NamedTuple):
    """Answer to a :class:`StateQuery`; counter tuples line up with the query's keys."""

    events: Mapping[tuple[str, str], float] = MappingProxyType({})  # (advertiser, event) -> latest ts
    user_counters: tuple[float, ...] = ()
    shared_counters: tuple[float, ...] = ()


@runtime_checkable
class StateStore(Protocol):
    def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """One answer per query, same order, in a single round trip."""
        ...

    def add_events(self, events: Sequence[Event], ttl: int) -> None:
        """Remember the latest ``ts`` per (user, advertiser, event); re-sending is harmless.
        Entries may be forgotten ``ttl`` seconds after their ``ts``."""
        ...

    def add_counters(self, counters: Sequence[Counter]) -> None:
        """Atomically add each counter's amount."""
        ...


class StoreUnavailable(Exception):
    """The store did not answer in time or is down; the engine degrades."""
