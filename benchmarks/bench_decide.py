"""In-process decide latency against a precompiled linear scan of the same campaigns.

    python benchmarks/bench_decide.py [--sizes 1000 10000 100000] [--requests 3000]

For each campaign count it generates random valid campaigns (``targeting.gen``),
compiles them, and times, on the same random requests:

- ``match``: the bitset and ranking stage alone (``ordered.prepare``, decide's fast
  path: request → ranked head of the eligible campaigns, store query);
- ``decide``: the whole ``Engine.decide`` (validation, matching, in-memory store
  checks, pCTR, ranking, answer dict);
- ``scan``: the baseline, a loop over every clause with its sets precompiled
  (``spec.clause_matches`` on domain indices plus status/flight/time per campaign);
- ``fixed``: the machine's own jitter, a loop of fixed pure-Python work sized to
  decide's median, timed the same way in the same run. Its p99 is the floor that
  no code with that median can beat here (on the shared 2-core VM we measure on,
  fixed work shows p99 about 2x its p50).

Goals (issue 2): decide p99 <= 50 us and >= 200x the scan at 10k campaigns;
p99 <= 250 us at 100k. Times are wall-clock on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from targeting import Engine, ordered
from targeting.compiler import compile_campaigns
from targeting.decide import point_of
from targeting.engine import settle_heap
from targeting.gen import generate_campaigns
from targeting.matcher import moment
from targeting.request import parse_request
from targeting.rules import validate_campaigns
from targeting.spec import clause_matches
from targeting.taxonomy import Taxonomy


def random_requests(tx: Taxonomy, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cities = [c for p in tx.provinces for c in tx.cities_of(p)]
    tags = tx.tag_ids
    base = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        # an ad server decides "now": timestamps within the next hour, like live traffic
        r: dict[str, Any] = {"user_id": f"u{rng.randrange(10**6)}",
                             "ts": (base + dt.timedelta(seconds=rng.randrange(3600))).isoformat()}
        if rng.random() < 0.9:
            r["geo"] = {"city": rng.choice(cities)}
        if rng.random() < 0.9:
            r["gender"] = rng.choice(["male", "female"])
        if rng.random() < 0.85:
            r["age"] = rng.randint(16, 70)
        if rng.random() < 0.8:
            r["tags"] = rng.sample(tags, rng.randint(1, 5))
        if rng.random() < 0.7:
            r["scene"] = rng.choice(list(tx.scenes))
        out.append(r)
    return out


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) * 1e6


def scan(engine: Engine, raw: dict[str, Any], plan: list[tuple[int, Any]]) -> int:
    """The baseline: every clause tested in turn, sets precompiled."""
    idx = engine.index
    req = parse_request(raw, engine.taxonomy, time.time())
    p = point_of(req, engine.taxonomy, idx.tag_index)
    tags = frozenset(req.tags or ())
    m = moment(idx.zones, req.ts)
    eligible = set()
    for ci, cl in plan:
        z = idx.zone_of[ci]
        day = m.days[z]
        if not idx.active[ci] or not (idx.start_day[ci] <= day <= idx.end_day[ci]):
            continue
        if clause_matches(cl, p.geo, p.gender, p.age, p.scene, m.slots[z], tags):
            eligible.add(ci)
    return len(eligible)


def bench(n: int, n_req: int, tx: Taxonomy) -> dict[str, float]:
    t0 = time.perf_counter()
    camps = validate_campaigns([("gen.yaml", generate_campaigns(n, tx, seed=n))], tx)
    t1 = time.perf_counter()
    index = compile_campaigns(camps, tx, "bench")
    t2 = time.perf_counter()
    engine = Engine(tx, index)
    settle_heap()  # as `targeting serve` does at start-up (an embedding ad server should too)
    reqs = random_requests(tx, n_req, seed=1)
    plan = [(int(index.owner[j]), cl) for j, cl in enumerate(cl for c in index.campaigns for cl in c.clauses)]
    for r in random_requests(tx, n_req, seed=2):  # warm up on other requests (interpreter, minutes, live sets)
        engine.decide(r)
    match_t, decide_t, cands = [], [], []
    now = time.time()
    parsed = [parse_request(r, tx, now) for r in reqs]
    for req in parsed:
        a = time.perf_counter()
        pend = ordered.prepare(engine._snap.ordered, tx, req)
        match_t.append(time.perf_counter() - a)
        cands.append(pend.n_candidates)
    for r in reqs:
        a = time.perf_counter()
        engine.decide(r)
        decide_t.append(time.perf_counter() - a)
    fixed_t = fixed_work(pct(decide_t, 50) / 1e6, n_req)
    scan_t = []
    n_scan = max(20, min(n_req, 2_000_000 // max(n, 1)))
    for r in reqs[:n_scan]:
        a = time.perf_counter()
        scan(engine, r, plan)
        scan_t.append(time.perf_counter() - a)
    return {
        "campaigns": n, "clauses": index.n_clauses, "load_s": t1 - t0, "compile_s": t2 - t1,
        "index_mb": index.rows.nbytes / 2**20, "candidates": float(np.mean(cands)),
        "match_p50": pct(match_t, 50), "match_p99": pct(match_t, 99),
        "decide_p50": pct(decide_t, 50), "decide_p99": pct(decide_t, 99),
        "scan_p50": pct(scan_t, 50), "scan_p99": pct(scan_t, 99),
        "fixed_p50": pct(fixed_t, 50), "fixed_p99": pct(fixed_t, 99),
    }


def _spin(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def fixed_work(target_s: float, n: int) -> list[float]:
    """Times of ``n`` runs of a fixed pure-Python loop whose median is about ``target_s``."""
    k = 1000
    for _ in range(4):  # calibrate the loop length on its median
        runs = []
        for _ in range(200):
            a = time.perf_counter()
            _spin(k)
            runs.append(time.perf_counter() - a)
        k = max(1, int(k * target_s / float(np.median(runs))))
    out = []
    for _ in range(n):
        a = time.perf_counter()
        _spin(k)
        out.append(time.perf_counter() - a)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rules", default="rules")
    args = ap.parse_args()
    tx = Taxonomy.load(Path(args.rules) / "taxonomy")
    rows = [bench(n, args.requests, tx) for n in args.sizes]
    head = ("campaigns", "clauses", "index MB", "compile s", "cands", "match p50/p99 us",
            "decide p50/p99 us", "fixed work p50/p99 us", "scan p50/p99 us", "scan/decide p50", "scan/match p50")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(" | ".join([
            f"{r['campaigns']:,}", f"{r['clauses']:,}", f"{r['index_mb']:.1f}", f"{r['compile_s']:.1f}",
            f"{r['candidates']:.0f}",
            f"{r['match_p50']:.0f} / {r['match_p99']:.0f}", f"{r['decide_p50']:.0f} / {r['decide_p99']:.0f}",
            f"{r['fixed_p50']:.0f} / {r['fixed_p99']:.0f}",
            f"{r['scan_p50']:.0f} / {r['scan_p99']:.0f}",
            f"{r['scan_p50'] / r['decide_p50']:.0f}x", f"{r['scan_p50'] / r['match_p50']:.0f}x",
        ]))
    print("\ngoals: decide p99 <= 50 us and scan/decide >= 200x at 10k; decide p99 <= 250 us at 100k")


if __name__ == "__main__":
    main()
