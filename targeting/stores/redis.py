"""Redis :class:`StateStore`: retargeting events, caps and spend shared by many servers.

Key layout lives in :mod:`targeting.stores.keys`. Reads are bounded in time: short
socket timeouts, a bounded blocking pool and a :class:`CircuitBreaker`, so that a
slow or dead Redis costs a decision at most ``timeout_ms`` (and nothing while the
breaker is open) and surfaces as :class:`StoreUnavailable`, never as a stall.
Writes (ingest, impressions) use their own pool with a longer ``write_timeout_ms``:
a 2,000-event pipeline legitimately takes longer than a decision's budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from .base import Counter, Event, StateQuery, StoreUnavailable, UserState
from .breaker import CircuitBreaker
from .keys import counter_key, decode_event_value, encode_event_value, event_key, once_key, unescape

T = TypeVar("T")

# Keep the max ts per hash field; KEYS[i] goes with ARGV[3i-2 .. 3i] = field, encoded
# value (b"<ts>|<expires>", see keys.py) and expiry in ms. The key lives until its
# newest field expires. One call carries many events, so Python builds a few
# commands, not one per event.
_ADD_EVENTS_LUA = """
local n = 0
for i = 1, #KEYS do
  local k, j = KEYS[i], (i - 1) * 3
  local field, value = ARGV[j + 1], ARGV[j + 2]
  local cur = redis.call('HGET', k, field)
  if not cur or tonumber(string.match(cur, '^[^|]*')) < tonumber(string.match(value, '^[^|]*')) then
    redis.call('HSET', k, field, value)
    if redis.call('PTTL', k) == -1 then
      redis.call('PEXPIREAT', k, ARGV[j + 3])
    else
      redis.call('PEXPIREAT', k, ARGV[j + 3], 'GT')
    end
    n = n + 1
  end
end
return n
"""

EVENTS_PER_SCRIPT_CALL = 500
EVENTS_PER_PIPELINE = 20_000
EVALS_IN_FLIGHT = 2
COUNTERS_PER_PIPELINE = 2_000


def _no_setinfo() -> dict[str, Any]:
    # CLIENT SETINFO costs a round trip per new connection, inside the decision budget.
    try:
        import redis.driver_info  # noqa: F401  (redis-py >= 7 replaced lib_name with driver_info)
    except ImportError:
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None}


def _pool(
    url: str, timeout_ms: float, pool_size: int, pool_timeout_ms: float
) -> redis.BlockingConnectionPool:
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=pool_timeout_ms / 1000,
        socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=timeout_ms / 1000,
        retry=Retry(NoBackoff(), 0),  # the breaker decides about retrying, not the client
        health_check_interval=0,
        **_no_setinfo(),
    )


class RedisStore:
    """``reader`` serves :meth:`fetch`; ``writer`` serves the two ``add_*`` methods.

    ``breaker`` (shared by both) and the properties ``breaker_state``, ``failures``
    and ``short_circuits`` are there for ``/metrics``.
    """

    def __init__(
        self,
        reader: redis.Redis,
        writer: redis.Redis | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url: str | None = None  # set by from_url, so other processes can reopen the store
        self._reader = reader
        self._writer = writer if writer is not None else reader
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._clock = clock
        self._add_events_script = self._writer.register_script(_ADD_EVENTS_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_ms: float = 5.0,
        write_timeout_ms: float = 1000.0,
        pool_size: int = 32,
        pool_timeout_ms: float | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> RedisStore:
        """``redis://host:port/db``; ``?timeout_ms=…&write_timeout_ms=…&pool_size=…`` in
        the URL override the keyword arguments (so ``--store`` can tune them)."""
        original_url = url
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        timeout_ms = float(query.pop("timeout_ms", timeout_ms))
        write_timeout_ms = float(query.pop("write_timeout_ms", write_timeout_ms))
        pool_size = int(query.pop("pool_size", pool_size))
        url = urlunsplit(parts._replace(query=urlencode(query)))
        wait_ms = timeout_ms if pool_timeout_ms is None else pool_timeout_ms
        reader = redis.Redis(connection_pool=_pool(url, timeout_ms, pool_size, wait_ms))
        writer = redis.Redis(
            connection_pool=_pool(url, write_timeout_ms, pool_size, write_timeout_ms)
        )
        store = cls(reader, writer, breaker=breaker, clock=clock)
        store.url = original_url
        return store

    # -- metrics -----------------------------------------------------------------
    @property
    def breaker_state(self) -> str:
        return self.breaker.state

    @property
    def failures(self) -> int:
        return self.breaker.failures

    @property
    def short_circuits(self) -> int:
        return self.breaker.short_circuits

    # -- StateStore --------------------------------------------------------------
    def fetch(self, queries: Sequence[StateQuery]) -> list[UserState]:
        """One pipeline: HGETALL per (user, advertiser), one MGET for all counters."""
        counter_index: dict[bytes, int] = {}
        for q in queries:
            for k in q.user_counters:
                counter_index.setdefault(counter_key(q.user_id, k), len(counter_index))
            for k in q.shared_counters:
                counter_index.setdefault(counter_key("", k), len(counter_index))
        advertisers = [tuple(dict.fromkeys(q.advertisers)) for q in queries]
        n_hashes = sum(len(a) for a in advertisers)
        if n_hashes == 0 and not counter_index:
            return [UserState() for _ in queries]

        def run() -> list[Any]:
            with self._reader.pipeline(transaction=False) as pipe:
                for q, advs in zip(queries, advertisers):
                    for adv in advs:
                        pipe.hgetall(event_key(q.user_id, adv))
                if counter_index:
                    pipe.mget(list(counter_index))
                return pipe.execute()

        replies = self._guarded(run)
        now = self._clock()
        values = replies[n_hashes] if counter_index else []

        def counter(key: bytes) -> float:
            raw = values[counter_index[key]]
            return 0.0 if raw is None else float(raw)

        out = []
        pos = 0
        for q, advs in zip(queries, advertisers):
            events: dict[tuple[str, str], float] = {}
            for adv in advs:
                for field, raw in replies[pos].items():
                    ts, expires = decode_event_value(raw)
                    if expires > now:
                        events[(adv, field.decode())] = ts
                pos += 1
            out.append(
                UserState(
                    events=events,
                    user_counters=tuple(
                        counter(counter_key(q.user_id, k)) for k in q.user_counters
                    ),
                    shared_counters=tuple(counter(counter_key("", k)) for k in q.shared_counters),
                )
            )
        return out

    def add_events(self, events: Sequence[Event], ttl: int) -> None:
        """Atomic max-ts per (user, advertiser, event) in Lua, pipelined in chunks."""
        latest: dict[tuple[bytes, bytes], float] = {}
        for e in events:
            k = (event_key(e.user_id, e.advertiser), e.event.encode())
            ts = float(e.ts)
            if latest.get(k, -math.inf) < ts:
                latest[k] = ts
        items = list(latest.items())
        for start in range(0, len(items), EVENTS_PER_PIPELINE):
            chunk = items[start : start + EVENTS_PER_PIPELINE]
            self._guarded(partial(self._send_events, chunk, ttl))

    def _send_events(self, items: list[tuple[tuple[bytes, bytes], float]], ttl: int) -> None:
        """Stream EVALSHA calls with up to ``EVALS_IN_FLIGHT`` unanswered, so Redis runs
        one chunk while Python packs the next (a plain pipeline would serialise the two).
        Re-sending is harmless, so after a NOSCRIPT (Redis restarted) we reload and redo."""
        script = self._add_events_script
        try:
            self._stream_evalsha(script.sha, items, ttl)
        except NoScriptError:
            script.sha = self._writer.script_load(script.script)
            self._stream_evalsha(script.sha, items, ttl)

    def _stream_evalsha(
        self, sha: str, items: list[tuple[tuple[bytes, bytes], float]], ttl: int
    ) -> None:
        pool = self._writer.connection_pool
        conn = pool.get_connection()
        try:
            in_flight = 0
            for start in range(0, len(items), EVENTS_PER_SCRIPT_CALL):
                keys: list[bytes] = []
                args: list[bytes | int] = []
                for (key, field), ts in items[start : start + EVENTS_PER_SCRIPT_CALL]:
                    keys.append(key)
                    expires = ts + ttl
                    args += [field, encode_event_value(ts, expires), math.ceil(expires * 1000)]
                conn.send_command("EVALSHA", sha, len(keys), *keys, *args)
                in_flight += 1
                if in_flight > EVALS_IN_FLIGHT:
                    conn.read_response()
                    in_flight -= 1
            for _ in range(in_flight):
                conn.read_response()
        except BaseException:
            conn.disconnect()  # unread replies would poison the next user of this connection
            raise
        finally:
            pool.release(conn)

    def add_counters(self, counters: Sequence[Counter]) -> None:
        """INCRBYFLOAT + EXPIRE per counter inside MULTI/EXEC, pipelined in chunks."""
        step = COUNTERS_PER_PIPELINE
        for start in range(0, len(counters), step):
            chunk = counters[start : start + step]

            def run(chunk: Sequence[Counter] = chunk) -> None:
                with self._writer.pipeline(transaction=True) as pipe:
                    for c in chunk:
                        k = counter_key(c.user_id, c.key)
                        pipe.incrbyfloat(k, c.amount)
                        pipe.expire(k, c.ttl)
                    pipe.execute()

            self._guarded(run)

    def users_with_events(self, advertiser: str, events: set[str], since: float) -> set[str]:
        """Users whose latest event in ``events`` for ``advertiser`` is at or after ``since``
        and not expired. Optional ability (not in the Protocol) used by reach and export:
        SCAN over the advertiser's own key space, HMGET in pipelined pages. An offline
        operation, so it runs on the writer's longer timeout."""
        prefix = event_key("", advertiser)  # b"t1:ev:<adv>:"
        fields = sorted(events)
        now = self._clock()

        def run() -> set[str]:
            found: set[str] = set()
            for page in _pages(self._writer.scan_iter(match=_glob_escape(prefix) + b"*", count=1000), 1000):
                with self._writer.pipeline(transaction=False) as pipe:
                    for key in page:
                        pipe.hmget(key, fields)
                    replies = pipe.execute()
                for key, values in zip(page, replies):
                    for raw in values:
                        if raw is None:
                            continue
                        ts, expires = decode_event_value(raw)
                        if ts >= since and expires > now:
                            found.add(unescape(key[len(prefix):]))
                            break
            return found

        return self._guarded(run)

    def claim(self, keys: Sequence[str], values: Sequence[float], ttl: int) -> list[bool]:
        """SET NX EX per key, pipelined: True where this call set it. Optional ability (see
        MemoryStore.claim): one claim holds across every process that shares the Redis."""

        def run() -> list[bool]:
            with self._writer.pipeline(transaction=False) as pipe:
                for k, v in zip(keys, values):
                    pipe.set(once_key(k), repr(float(v)), nx=True, ex=max(1, int(ttl)))
                return [bool(r) for r in pipe.execute()]

        return self._guarded(run) if keys else []

    def claimed(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        raw = self._guarded(lambda: self._writer.mget([once_key(k) for k in keys]))
        return [None if r is None else float(r) for r in raw]

    def release(self, keys: Sequence[str]) -> None:
        if keys:
            self._guarded(lambda: self._writer.delete(*[once_key(k) for k in keys]))

    def close(self) -> None:
        self._reader.connection_pool.disconnect()
        self._writer.connection_pool.disconnect()

    # -- degradation -------------------------------------------------------------
    def _guarded(self, call: Callable[[], T]) -> T:
        """Run ``call`` through the breaker; any Redis failure becomes StoreUnavailable.

        Only connection trouble and timeouts count against the breaker: an error
        *reply* (OOM, READONLY) proves the server is answering.
        """
        if not self.breaker.allow():
            raise StoreUnavailable("redis: circuit open")
        try:
            result = call()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            self.breaker.record_failure()
            raise StoreUnavailable(f"redis: {type(e).__name__}: {e}") from e
        except redis.RedisError as e:
            self.breaker.record_success()
            raise StoreUnavailable(f"redis: {type(e).__name__}: {e}") from e
        except BaseException:
            self.breaker.record_success()  # our bug, not Redis's: free a half-open probe
            raise
        self.breaker.record_success()
        return result


def _glob_escape(raw: bytes) -> bytes:
    """Escape Redis glob metacharacters so an id is matched literally by SCAN MATCH."""
    out = bytearray()
    for b in raw:
        if b in b"*?[]\\":
            out += b"\\"
        out.append(b)
    return bytes(out)


def _pages(items: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    page: list[bytes] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page
