"""Decide over Redis against decide over the in-memory store, and with Redis down (issue 4).

    python benchmarks/bench_decide_store.py [--campaigns 10000] [--requests 3000]

Same generated campaigns (a third with retargeting rules, a quarter capped, a quarter
budgeted) and the same requests from 2,000 users, half of whom have retargeting events
and impressions. Prints decide p50/p99 for: the memory store, Redis on loopback,
Redis SIGSTOPped (timeout 5 ms, breaker) and the ratios. Starts its own redis-server.
Goal: with Redis down, decide p99 within the configured budget (the timeout).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_decide import random_requests
from redis_server import RedisServer

from targeting import Engine
from targeting.compiler import compile_campaigns
from targeting.gen import generate_campaigns
from targeting.rules import validate_campaigns
from targeting.spec import EVENTS
from targeting.stores import MemoryStore
from targeting.stores.breaker import CircuitBreaker
from targeting.stores.redis import RedisStore
from targeting.taxonomy import Taxonomy


def campaigns(n: int, tx: Taxonomy) -> list[dict[str, Any]]:
    rng = random.Random(3)
    raw = generate_campaigns(n, tx, seed=n)
    for c in raw:
        if rng.random() < 0.33 and "retargeting" not in c["targeting"]:
            c["targeting"]["retargeting"] = {"any": [{"event": rng.choice(EVENTS), "within_days": 30}]}
    return raw


def load_state(e: Engine, raw: list[dict[str, Any]], users: list[str]) -> None:
    rng = random.Random(4)
    now = time.time()
    advertisers = sorted({c["advertiser"] for c in raw})
    capped = [c["id"] for c in raw if "frequency_cap" in c]
    events = [{"user_id": u, "advertiser": rng.choice(advertisers), "event": rng.choice(EVENTS),
               "ts": now - rng.randrange(40 * 86400)} for u in users[::2] for _ in range(20)]
    for i in range(0, len(events), 5000):
        e.record_events(events[i:i + 5000])
    imps = [{"user_id": u, "campaign_id": rng.choice(capped)} for u in users[::2] for _ in range(10)]
    for i in range(0, len(imps), 5000):
        e.record_impressions(imps[i:i + 5000])


def timed(e: Engine, reqs: list[dict[str, Any]]) -> tuple[float, float, float]:
    for r in reqs[:100]:
        e.decide(r)
    t, degraded = [], 0
    for r in reqs:
        a = time.perf_counter()
        ans = e.decide(r)
        t.append(time.perf_counter() - a)
        degraded += bool(ans["degraded"])
    p50, p99 = np.percentile(t, [50, 99]) * 1e3
    return float(p50), float(p99), degraded / len(reqs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaigns", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--timeout-ms", type=float, default=5.0)
    a = ap.parse_args()
    tx = Taxonomy.load(ROOT / "rules" / "taxonomy")
    raw = campaigns(a.campaigns, tx)
    index = compile_campaigns(validate_campaigns([("gen.yaml", raw)], tx), tx, "bench")
    users = [f"u{i}" for i in range(2000)]
    reqs = random_requests(tx, a.requests, seed=1)
    rng = random.Random(5)
    for r in reqs:
        r["user_id"] = rng.choice(users)
    rows = []
    mem = Engine(tx, index, store=MemoryStore())
    load_state(mem, raw, users)
    rows.append(("memory", *timed(mem, reqs)))
    server = RedisServer().start()
    try:
        store = RedisStore.from_url(server.url, timeout_ms=a.timeout_ms,
                                    breaker=CircuitBreaker(failure_threshold=5, cooldown_s=1.0))
        red = Engine(tx, index, store=store)
        load_state(red, raw, users)
        rows.append(("redis (loopback)", *timed(red, reqs)))
        server.pause()
        try:
            rows.append((f"redis SIGSTOPped ({a.timeout_ms:g} ms timeout, breaker)", *timed(red, reqs)))
        finally:
            server.resume()
        store.close()
    finally:
        server.cleanup()
    print(f"{a.campaigns:,} campaigns, {a.requests:,} requests from {len(users):,} users\n")
    print(f"{'store':<45} {'p50 ms':>8} {'p99 ms':>8} {'degraded':>9}")
    for name, p50, p99, deg in rows:
        print(f"{name:<45} {p50:8.3f} {p99:8.3f} {deg:9.0%}")
    print(f"\nredis / memory: p50 {rows[1][1] / rows[0][1]:.2f}x, p99 {rows[1][2] / rows[0][2]:.2f}x")
    down = rows[2][2]
    print(f"redis down: p99 {down:.2f} ms against a {a.timeout_ms:g} ms timeout: "
          f"{'PASS' if down <= a.timeout_ms + rows[0][2] else 'FAIL'} (goal: within the budget)")


if __name__ == "__main__":
    main()
