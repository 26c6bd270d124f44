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
    """``None`` or ``memory://`` → :class:`MemoryStore` (``memory://?max_users=N`` sets its
    cap, ``max_users=0`` removes it); ``redis://host:port/db`` → RedisStore."""
    if url is None or url in ("", "memory", "memory://"):
        return MemoryStore()
    if url.startswith("memory://?"):
        from urllib.parse import parse_qs

        query = parse_qs(url[len("memory://?"):])
        unknown = set(query) - {"max_users"}
        if unknown or not all(v.isdigit() for v in query.get("max_users", ["0"])):
            raise ValueError(f"bad store URL {url!r}; expected memory://?max_users=N")
        cap = int(query.get("max_users", ["0"])[-1])
        return MemoryStore(max_users=cap or None)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore.from_url(url)
    raise ValueError(f"unknown store URL {url!r}; expected memory:// or redis://host:port/db")
