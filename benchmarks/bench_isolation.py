"""Tenant isolation (issue 19): decide latency on one worker while one advertiser floods reach.

    python benchmarks/bench_isolation.py [--users 200000] [--seconds 15] [--flooders 8] [--modes thread,process]

Starts ``targeting serve --workers 1 --auth KEYS --profiles P`` once per audience-pool
mode (``TARGETING_AUDIENCE_POOL``: ``thread`` or ``process``, service/offload.py) and
measures ``POST /v1/decide`` latency from one client that sends one request every
``--gap`` ms:

  idle    nothing else runs
  flood   ``--flooders`` connections of one advertiser key loop ``POST /v1/reach`` with
          the heaviest spec the limits allow (64 alternatives, ~4,000 values, every
          breakdown, the funnel and an overlap spec of the same size, ~55 KB)

and prints decide p50/p99 for both, their ratio (goal: flood p99 <= 10x idle p99), and
how many reach requests were answered or refused (429: over the advertiser's share).
The flooders run in another process, so the client's own GIL does not colour the
decide figures. On a shared machine, run it twice; the table says how many cores.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable
KEYS = {"ad_server": "bench-adserver-key-0123456789", "advertiser:fortune-bank": "bench-fortune-key-0123456789"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def heaviest_spec(seed: int) -> dict[str, Any]:
    """64 alternatives of 60 cities each, distinct age ranges and genders, under a
    top-level tag constraint: as much work as the parse limits let one spec ask for."""
    from targeting.taxonomy import Taxonomy

    tx = Taxonomy.load(REPO / "rules" / "taxonomy")
    rng = random.Random(seed)
    cities = sorted(a for a, p in tx.places.items() if p.level == "city")
    alts = []
    for i in range(64):
        lo = rng.randint(15, 60)
        alts.append({"geo": {"include": rng.sample(cities, 60)}, "gender": ["female", "male"][i % 2],
                     "age": [[lo, lo + rng.randint(3, 20)]]})
    return {"tags": {"none": ["it_fan"]}, "any_of": alts}


def flood(url: str, key: str, body: dict[str, Any], connections: int, stop_at: float, out: Any) -> None:
    """In a child process: ``connections`` threads loop POST /v1/reach until ``stop_at``."""
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def loop() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            while time.time() < stop_at:
                try:
                    status = c.post("/v1/reach", json=body).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(counts)


def decide_latencies(url: str, seconds: float, gap_s: float, users: list[str]) -> np.ndarray:
    rng = random.Random(1)
    lat = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEYS['ad_server']}"}, timeout=30) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = {"user_id": rng.choice(users), "geo": {"city": 440300}, "age": rng.randint(18, 60)}
            t0 = time.perf_counter()
            r = c.post("/v1/decide", json=body)
            lat.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            time.sleep(gap_s)
    return np.array(lat) * 1e3


class Server:
    def __init__(self, data: Path, profiles: Path, mode: str, workers: int) -> None:
        self.port = free_port()
        keys = data / "keys.json"
        keys.write_text(json.dumps([{"key": k, "role": r} for r, k in KEYS.items()]))
        env = {**os.environ, "TARGETING_AUDIENCE_POOL": mode, "TARGETING_AUDIENCE_WORKERS": str(workers),
               "TARGETING_HOME": str(data / "home")}
        self.proc = subprocess.Popen(
            [PY, "-m", "targeting.cli", "serve", "--rules", str(REPO / "rules"), "--profiles", str(profiles),
             "--auth", str(keys), "--port", str(self.port), "--workers", "1", "--log-level", "warning"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"server failed: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def run_mode(mode: str, a: argparse.Namespace, profiles: Path, users: list[str], body: dict[str, Any]) -> dict:
    srv = Server(a.data, profiles, mode, a.workers)
    try:
        key = KEYS["advertiser:fortune-bank"]
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            for _ in range(3):  # the worker processes have spawned and mapped the index
                r = c.post("/v1/reach", json=body)
                assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            c.post("/v1/reach", json=body)
            one_reach = (time.perf_counter() - t0) * 1e3
        decide_latencies(srv.url, 2, a.gap / 1e3, users)  # warm-up
        idle = decide_latencies(srv.url, a.seconds, a.gap / 1e3, users)
        ctx = multiprocessing.get_context("spawn")
        q = ctx.Queue()
        stop_at = time.time() + a.seconds + 3
        p = ctx.Process(target=flood, args=(srv.url, key, body, a.flooders, stop_at, q))
        p.start()
        time.sleep(2)  # the flood is under way
        busy = decide_latencies(srv.url, a.seconds, a.gap / 1e3, users)
        counts = q.get(timeout=600)
        p.join()
    finally:
        srv.stop()
    flood_s = a.seconds + 3
    return {"mode": mode, "idle": idle, "flood": busy, "reach_ms": one_reach,
            "answered": counts.get(200, 0) / flood_s, "refused": counts.get(429, 0) / flood_s,
            "other": {k: v for k, v in counts.items() if k not in (200, 429)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=200_000, help="population size (default 200,000)")
    ap.add_argument("--seconds", type=float, default=15, help="seconds per phase (default 15)")
    ap.add_argument("--gap", type=float, default=5, help="ms between one decide's answer and the next (default 5)")
    ap.add_argument("--flooders", type=int, default=8, help="concurrent reach connections (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="audience workers (default 2)")
    ap.add_argument("--modes", default="thread,process", help="audience pool modes to compare")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "targeting-bench-isolation")
    a = ap.parse_args()
    from targeting.population import generate_population
    from targeting.taxonomy import Taxonomy

    a.data.mkdir(parents=True, exist_ok=True)
    profiles = a.data / f"profiles-{a.users}.parquet"
    if not profiles.exists():
        print(f"generating {a.users:,} users ...", file=sys.stderr)
        generate_population(profiles, a.users, taxonomy=Taxonomy.load(REPO / "rules" / "taxonomy"), seed=1,
                            progress=False)
    import pyarrow.parquet as pq

    ids = pq.read_table(profiles, columns=["user_id"]).column("user_id").to_pylist()
    users = random.Random(2).sample(ids, min(5000, len(ids)))
    body = {"targeting": heaviest_spec(1), "breakdown": ["province", "city", "gender", "age", "tag"],
            "funnel": True, "overlap": heaviest_spec(2)}
    size = len(json.dumps(body, separators=(",", ":")))
    results = [run_mode(m, a, profiles, users, body) for m in a.modes.split(",")]

    print(f"\ndecide on 1 worker, {a.users:,} users, {os.cpu_count()} cores; flood: {a.flooders} connections of "
          f"one advertiser, reach body {size / 1024:.0f} KB, {a.workers} audience workers")
    print(f"{'pool':8} {'one reach':>10} {'idle p50':>9} {'idle p99':>9} {'flood p50':>10} {'flood p99':>10} "
          f"{'p99 ratio':>9} {'reach 200/s':>11} {'429/s':>7}")
    for r in results:
        i50, i99 = np.percentile(r["idle"], [50, 99])
        f50, f99 = np.percentile(r["flood"], [50, 99])
        print(f"{r['mode']:8} {r['reach_ms']:8.0f}ms {i50:7.2f}ms {i99:7.2f}ms {f50:8.2f}ms {f99:8.2f}ms "
              f"{f99 / i99:8.1f}x {r['answered']:11.1f} {r['refused']:7.1f}"
              + (f"  other: {r['other']}" if r["other"] else ""))
    print("goal: flood p99 <= 10x idle p99")


if __name__ == "__main__":
    main()
