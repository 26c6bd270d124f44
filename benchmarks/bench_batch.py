"""Batch scoring throughput against ``Engine.decide`` in a loop, and Dask with 1 vs 2 workers.

    python benchmarks/bench_batch.py [--campaigns 10000] [--requests 100000] [--decide 300] [--model DIR]

Two rule sets of generated campaigns (``targeting.gen``): as generated (a
quarter with frequency caps, a quarter with budgets, some retargeting: the
state store is read for most requests) and the same campaigns without
store-backed features (pure targeting). With the first, ``--warm`` of the
requests' users have state, as serving leaves it: impressions of the top 3
campaigns decide chose for one of their requests (caps and spend) and two
retargeting events of advertisers that retarget. For each: ``Engine.decide`` on the
first ``--decide`` requests, one at a time, and ``targeting.batch.score`` on
all ``--requests`` (single process); goal >= 20x and >= 200k requests/s per
core. Then the pure-targeting set on a Dask ``LocalCluster`` with 1 and 2
single-threaded worker processes. ``--model`` scores with a click model written by
``targeting train`` instead of the priors. A fixed workload timed before and after
(``machine_speed``) says how fast this shared machine was during the runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from targeting.batch import score
from targeting.batchrequests import request_from_row
from targeting.clicklog import generate_requests
from targeting.compiler import compile_campaigns
from targeting.engine import MAX_BATCH, Engine, settle_heap
from targeting.gen import generate_campaigns
from targeting.rules import validate_campaigns
from targeting.spec import EVENTS
from targeting.stores.memory import MemoryStore
from targeting.taxonomy import Taxonomy

RULES = Path(__file__).resolve().parents[1] / "rules"



def engine_for(camps: list[dict], tx: Taxonomy, now: float, model: Any = None) -> Engine:
    index = compile_campaigns(validate_campaigns([("gen.yaml", camps)], tx), tx, "bench")
    engine = Engine(tx, index, store=MemoryStore(clock=lambda: now), model=model, clock=lambda: now)
    settle_heap()  # as a long-running process would (targeting serve does)
    return engine


def warm(engine: Engine, path: Path, share: float, now: float) -> int:
    """State for ``share`` of the users of the requests file; returns how many users got it."""
    import pyarrow.parquet as pq

    rng = random.Random(5)
    first: dict[str, dict] = {}
    for r in pq.read_table(path).to_pylist():
        first.setdefault(r["user_id"], r)
    users = rng.sample(sorted(first), int(len(first) * share))
    advertisers = sorted({c.advertiser for c in engine.index.campaigns if c.spec.uses_retargeting})
    impressions, events = [], []
    for u in users:
        ans = engine.decide(request_from_row(first[u]))
        impressions += [{"user_id": u, "campaign_id": d["campaign_id"], "ts": now - rng.randrange(0, 3600),
                         "price": d["ecpm"]} for d in ans["decisions"][:3]]
        events += [{"user_id": u, "advertiser": rng.choice(advertisers), "event": rng.choice(EVENTS),
                    "ts": now - rng.randrange(0, 7 * 86400)} for _ in range(2)]
    step = 10 * MAX_BATCH
    for k in range(0, len(impressions), step):
        assert engine.record_impressions(impressions[k:k + step])["accepted"] == len(impressions[k:k + step])
    for k in range(0, len(events), MAX_BATCH):
        engine.record_events(events[k:k + MAX_BATCH])
    return len(users)


def decide_loop(engine: Engine, path: Path, n: int) -> float:
    import pyarrow.parquet as pq

    raws = [request_from_row(r) for r in pq.read_table(path).slice(0, n).to_pylist()]
    t = time.perf_counter()
    for raw in raws:
        engine.decide(raw)
    return len(raws) / (time.perf_counter() - t)


def machine_speed() -> str:
    """A fixed workload, best of 5: how fast this (shared) machine is right now, to read the
    absolute requests/s goal by. Plain Python (a loop of 1M integer adds) and numpy (a sort of
    2M floats)."""
    import numpy as np

    data = np.random.default_rng(0).random(2_000_000)

    def loop() -> int:
        total = 0
        for i in range(1_000_000):
            total += i
        return total

    def best(work: Any) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            work()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3

    return f"fixed workload {best(loop):.0f} ms Python, {best(lambda: np.sort(data)):.0f} ms numpy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--campaigns", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--decide", type=int, default=300)
    ap.add_argument("--warm", type=float, default=0.5, help="share of users with state (default 0.5)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--model", help="a model directory (targeting train); default: the priors")
    args = ap.parse_args()
    tx = Taxonomy.load(RULES / "taxonomy")
    model = None
    if args.model:
        from targeting.model import load_model

        model = load_model(args.model, tx)
    now = time.time()
    full = generate_campaigns(args.campaigns, tx, seed=1)
    plain = copy.deepcopy(full)
    for c in plain:
        c.pop("frequency_cap", None)
        c.pop("daily_budget", None)
        c["targeting"].pop("retargeting", None)
    cpu = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        req = generate_requests(d / "req.parquet", args.requests, taxonomy=tx, seed=3, end=now, progress=False)
        print(f"\n{args.campaigns:,} campaigns, {args.requests:,} requests, {cpu} CPUs, "
              f"model {model.version if model is not None else 'priors'} "
              f"(load average {os.getloadavg()[0]:.1f}; {machine_speed()})\n")
        print(f"{'rule set':22}{'decide req/s':>14}{'batch req/s':>14}{'speedup':>10}{'decisions/req':>15}")
        plain_engine = None
        for name, camps in (("with caps/budgets/rt", full), ("targeting only", plain)):
            engine = engine_for(camps, tx, now, model)
            if camps is full and args.warm > 0:
                print(f"(warmed: {warm(engine, req, args.warm, now):,} users with impressions and events)")
            dps = decide_loop(engine, req, args.decide)
            r = score(engine, req, d / f"{name[:4]}.parquet", progress=False)
            bps = r["requests"] / r["seconds"]
            print(f"{name:22}{dps:>14,.0f}{bps:>14,.0f}{bps / dps:>9.1f}x{r['decisions'] / r['requests']:>15.2f}")
            plain_engine = engine
        print("\ngoal: >= 20x decide and >= 200,000 requests/s per core (batch runs in one process, one core)")
        print(f"after the runs: {machine_speed()}")
        if args.no_dask:
            return
        from distributed import Client, LocalCluster

        print(f"\nDask LocalCluster, targeting-only rule set, {args.requests:,} requests")
        print(f"{'workers':>8}{'req/s':>12}{'seconds':>10}{'partitions':>12}")
        base = None
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                r = score(plain_engine, req, d / f"dask{workers}", scheduler=client, progress=False,
                          partition_rows=max(args.requests // 8, 1000))
            rps = r["requests"] / r["seconds"]
            base = base or rps
            print(f"{workers:>8}{rps:>12,.0f}{r['seconds']:>10.1f}{r['partitions']:>12}   x{rps / base:.2f}")


if __name__ == "__main__":
    main()
