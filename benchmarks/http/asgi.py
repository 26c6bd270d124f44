"""Per-request cost of the service without sockets or a load generator.

    python benchmarks/http/asgi.py [--campaigns 2000] [--requests 3000]

Drives the ASGI app in-process (same bodies as the locust file) and measures the
CPU time per request, which stays meaningful on a shared machine where wall-clock
throughput does not. Rows: the no-op route (framework + body parsing + auth),
decide inline on the event loop, decide through the threadpool, the engine call
alone, and the batch route per decision. The "capacity" column is 1 / CPU time,
an upper bound on one worker's requests/s before the HTTP server's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from service import Settings, create_app
from targeting import Engine
from targeting.engine import settle_heap


def load_pool() -> list[bytes]:
    spec = importlib.util.spec_from_file_location("bench_locustfile", Path(__file__).with_name("locustfile.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.POOL)


def asgi_caller(app: Callable, path: str) -> Callable[[bytes], object]:
    async def call(body: bytes) -> None:
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status: list[int] = []

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"{path} answered {status}")

    return call


def measure(run: Callable[[int], None], n: int, rounds: int = 5) -> tuple[float, float]:
    """(CPU µs, wall µs) per item, median over rounds."""
    run(min(n, 200))  # warm up
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        run(n)
        cpu.append((time.process_time() - c0) / n * 1e6)
        wall.append((time.perf_counter() - w0) / n * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaigns", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from targeting.gen import generate_campaigns, write_campaigns
    from targeting.taxonomy import Taxonomy

    pool = load_pool()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules"
        rules.mkdir()
        (rules / "taxonomy").symlink_to(REPO / "rules" / "taxonomy")
        write_campaigns(generate_campaigns(a.campaigns, Taxonomy.load(rules / "taxonomy"), seed=a.seed),
                        rules / "campaigns")
        engine = Engine.load(rules)
    settle_heap()  # as the service does at start-up
    rows: dict[str, tuple[float, float]] = {}

    def route(app: Callable, path: str, bodies: list[bytes]) -> Callable[[int], None]:
        call = asgi_caller(app, path)

        def run(n: int) -> None:
            async def go() -> None:
                for i in range(n):
                    await call(bodies[i % len(bodies)])

            asyncio.run(go())

        return run

    inline = create_app(engine, Settings(bench=True, offload=False))
    pooled = create_app(engine, Settings(bench=True, offload=True))
    rows["noop"] = measure(route(inline, "/v1/noop", pool), a.requests)
    rows["decide (inline)"] = measure(route(inline, "/v1/decide", pool), a.requests)
    rows["decide (threadpool)"] = measure(route(pooled, "/v1/decide", pool), a.requests)
    raws = [orjson.loads(b) for b in pool]

    def engine_only(n: int) -> None:
        for i in range(n):
            engine.decide(raws[i % len(raws)])

    rows["engine.decide alone"] = measure(engine_only, a.requests)
    batches = [b'{"requests": [' + b",".join(pool[k:k + a.batch]) + b"]}"
               for k in range(0, len(pool) - a.batch + 1, a.batch)]
    nb = max(1, a.requests // a.batch)
    cpu, wall = measure(route(inline, "/v1/decide/batch", batches), nb)
    rows[f"batch of {a.batch}, per decision"] = (cpu / a.batch, wall / a.batch)

    print(f"{a.campaigns} generated campaigns, index {engine.index.version}, {engine.index.n_clauses} clauses")
    print(f"{'path':<30}{'CPU µs':>10}{'wall µs':>10}{'capacity/s':>12}")
    for name, (cpu, wall) in rows.items():
        print(f"{name:<30}{cpu:>10.0f}{wall:>10.0f}{1e6 / cpu:>12.0f}")
    noop, dec, pool_ = rows["noop"][0], rows["decide (inline)"][0], rows["decide (threadpool)"][0]
    print(f"\ndecide/noop capacity ratio   {noop / dec:.2f}x (goal >= 0.8 over HTTP)")
    print(f"inline vs threadpool         {pool_ / dec:.2f}x less CPU per decide inline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
