"""State stores: ``memory`` (default) and ``redis``, behind :class:`StateStore`."""

from __future__ import annotations

from .base import Counter as Counter
from .base import Event as Event
from .base import StateQuery as StateQuery
from .base import StateStore as StateStore
from .base import StoreUnavailable as StoreUnavailable
from .base import UserState as UserState
from .memory import MemoryStore as MemoryStore
from .snapshot import StateSnapshot as StateSnapshot


def open_store(url: str | None) -> StateStore:
    """``None`` or ``memory://`` → :class:`MemoryStore`; ``redis://host:port/db`` → RedisStore."""
    if url is None or url in ("", "memory", "memory://"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(f"unknown store URL {url!r}; expected memory:// or redis://host:port/db")
