"""State-store benchmark: ingest rate, fetch latency, fetch latency with Redis stopped.

    python benchmarks/bench_store.py [--events 200000] [--fetches 2000]

Starts its own redis-server on a free loopback port (needs ``redis-server`` on PATH).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

from targeting.stores import Counter, Event, MemoryStore, StateQuery, StoreUnavailable
from targeting.stores.breaker import CircuitBreaker
from targeting.stores.redis import RedisStore

EVENT_TYPES = ("visit", "click", "add_to_cart", "purchase")
ADVERTISERS = [f"adv{i}" for i in range(20)]
DAY = 86_400


def percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1e6, q[98] * 1e6  # µs


def make_events(n: int, now: float) -> list[Event]:
    """Random users (of 50k), advertisers and types: mostly distinct hash fields."""
    rng = random.Random(0)
    return [
        Event(
            f"u{rng.randrange(50_000)}",
            rng.choice(ADVERTISERS),
            rng.choice(EVENT_TYPES),
            now - rng.uniform(0, 30 * DAY),
        )
        for _ in range(n)
    ]


def ingest_rate(store: object, events: list[Event], batch: int = 20_000) -> tuple[float, float]:
    """(events per wall second, client CPU µs per event): on a busy machine the CPU
    figure says what the code costs, the wall figure what the box delivered."""
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(events), batch):
        store.add_events(events[start : start + batch], DAY)  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(events) / wall, cpu / len(events) * 1e6


def server_cpu_s(url: str) -> float:
    client = redis.Redis.from_url(url)
    info = client.info("cpu")
    client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fetch_latencies(store: object, query: StateQuery, n: int) -> tuple[list[float], int]:
    """Latencies of ``n`` fetches, and how many raised StoreUnavailable."""
    out, failed = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            store.fetch([query])  # type: ignore[attr-defined]
        except StoreUnavailable:
            failed += 1
        out.append(time.perf_counter() - t0)
    return out, failed


def latency_cell(samples: list[float], failed: int) -> str:
    p50, p99 = percentiles(samples)
    return f"p50 {p50:,.0f} µs  p99 {p99:,.0f} µs  unavailable {failed}/{len(samples)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--fetches", type=int, default=2_000)
    ap.add_argument("--timeout-ms", type=float, default=5.0)
    args = ap.parse_args()

    now = time.time()
    events = make_events(args.events, now)
    user_keys = tuple(f"cap:camp{i}:d:2026-11-24" for i in range(25))
    shared_keys = tuple(f"spend:camp{i}:2026-11-24" for i in range(5))
    query = StateQuery("u42", tuple(ADVERTISERS), user_keys, shared_keys)
    counters = [Counter("u42", k, 1, DAY) for k in user_keys]
    counters += [Counter("", k, 2.5, DAY) for k in shared_keys]

    server = RedisServer().start()
    rows: list[tuple[str, str, str]] = []
    try:
        memory = MemoryStore()
        redis_store = RedisStore.from_url(server.url, timeout_ms=args.timeout_ms)
        for name, store in (("memory", memory), ("redis", redis_store)):
            server0 = server_cpu_s(server.url)
            rate, client_us = ingest_rate(store, events)
            cell = f"{rate:,.0f}/s  (client CPU {client_us:.1f} µs/event"
            if name == "redis":
                server_us = (server_cpu_s(server.url) - server0) / len(events) * 1e6
                cell += f", server CPU {server_us:.1f} µs/event"
            rows.append((f"ingest events ({args.events:,}, batches of 20k)", name, cell + ")"))
        for name, store in (("memory", memory), ("redis", redis_store)):
            store.add_counters(counters)
            fetch_latencies(store, query, 200)  # warm up pools and caches
            cell = latency_cell(*fetch_latencies(store, query, args.fetches))
            rows.append(("fetch 20 advertisers + 30 counters", name, cell))

        # Stopped server: without a breaker every fetch pays the socket timeout...
        no_breaker = RedisStore.from_url(
            server.url, timeout_ms=args.timeout_ms, breaker=CircuitBreaker(failure_threshold=10**9)
        )
        with_breaker = RedisStore.from_url(server.url, timeout_ms=args.timeout_ms)
        server.pause()
        try:
            what = f"fetch, redis SIGSTOPped (timeout {args.timeout_ms:g} ms), no breaker"
            rows.append((what, "redis", latency_cell(*fetch_latencies(no_breaker, query, 100))))
            # ...with one, only the first few do; then it short-circuits.
            what = "fetch, redis SIGSTOPped, breaker (5 failures, then open)"
            rows.append((what, "redis", latency_cell(*fetch_latencies(with_breaker, query, 100))))
        finally:
            server.resume()
        for s in (redis_store, no_breaker, with_breaker):
            s.close()
    finally:
        server.cleanup()

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'store':<6}  result")
    for what, store_name, result in rows:
        print(f"{what:<{width}}  {store_name:<6}  {result}")


if __name__ == "__main__":
    main()
