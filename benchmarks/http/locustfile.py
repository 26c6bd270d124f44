"""Locust load for ``targeting serve`` (driven by ``benchmarks/http/run.py``).

Environment:
  BENCH_TARGET   decide | noop | batch   (which route every user hits)
  BENCH_RATE     total requests/s to hold (constant throughput); unset = as fast as possible
  BENCH_USERS    number of users (to split BENCH_RATE between them)
  BENCH_BATCH    requests per /v1/decide/batch call (default 100)
  BENCH_OUT      where to write exact client-side latencies (JSON) at the end
  BENCH_KEY      API key, when the server runs with --auth

Request bodies are drawn from a fixed pool of realistic impressions
(``bench_decide.random_requests``: random city, gender, age, tags, scene, now) so the server sees varied candidate sets.
The no-op route gets the very same bodies: the difference is the engine.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import ClassVar

from locust import FastHttpUser, between, constant_throughput, events, task

TARGET = os.environ.get("BENCH_TARGET", "decide")
RATE = float(os.environ.get("BENCH_RATE", "0") or 0)
USERS = int(os.environ.get("BENCH_USERS", "1"))
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
OUT = os.environ.get("BENCH_OUT")
KEY = os.environ.get("BENCH_KEY")
REPO = Path(__file__).resolve().parents[2]


def _pool(n: int = 5000, seed: int = 0) -> list[bytes]:
    """The same realistic impressions as ``bench_decide`` (timestamps within the next hour)."""
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    from bench_decide import random_requests

    from targeting.taxonomy import Taxonomy

    reqs = random_requests(Taxonomy.load(REPO / "rules" / "taxonomy"), n, seed)
    return [json.dumps({"request_id": f"r{i}", **r}).encode() for i, r in enumerate(reqs)]

POOL = _pool()
BATCHES = [
    b'{"requests": [' + b",".join(random.Random(k).sample(POOL, BATCH)) + b"]}" for k in range(50)
]
LATENCIES: list[float] = []


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: object,
    **kw: object,
) -> None:
    if exception is None:
        LATENCIES.append(response_time)


@events.quitting.add_listener
def _dump(environment: object, **kw: object) -> None:
    if OUT:
        Path(OUT).write_text(json.dumps(LATENCIES))


class Client(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS) if RATE else between(0, 0)
    headers: ClassVar[dict[str, str]] = {
        "Content-Type": "application/json",
        **({"Authorization": f"Bearer {KEY}"} if KEY else {}),
    }

    @task
    def hit(self) -> None:
        if TARGET == "batch":
            body, path = random.choice(BATCHES), "/v1/decide/batch"
        else:
            body, path = random.choice(POOL), "/v1/noop" if TARGET == "noop" else "/v1/decide"
        with self.client.post(path, data=body, headers=self.headers, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
