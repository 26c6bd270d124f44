"""Prometheus text exposition for the service (no client library: a few counters
and histograms, rendered on scrape).

HTTP counters are updated by :class:`MetricsMiddleware` on the event loop; the
engine's own tallies (``engine.stats``) and the store's breaker are read at
scrape time, so nothing on the decision path does extra work for metrics.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import Any

# seconds; dense below 10 ms where the decide budget lives
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    __slots__ = ("counts", "n", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (route, method, status)
        self.latency: dict[str, Histogram] = {}
        self.degraded: Counter[str] = Counter()  # decisions answered degraded, by reason
        self.decisions_served = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, status)] += 1
        h = self.latency.get(route)
        if h is None:
            h = self.latency[route] = Histogram()
        h.observe(seconds)

    def count_answers(self, answers: list[dict[str, Any]]) -> None:
        for a in answers:
            reasons = a.get("degraded")
            if reasons:
                for r in reasons:
                    self.degraded[r] += 1
        self.decisions_served += len(answers)

    def render(self, engine: Any) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("targeting_http_requests_total", "counter", "HTTP requests by route, method and status.")
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(f'targeting_http_requests_total{{route="{route}",method="{method}",status="{status}"}} {n}')
        family("targeting_http_request_duration_seconds", "histogram", "HTTP request latency by route.")
        for route, h in sorted(self.latency.items()):
            acc = 0
            for le, c in zip((*BUCKETS, "+Inf"), h.counts):
                acc += c
                out.append(f'targeting_http_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {acc}')
            out.append(f'targeting_http_request_duration_seconds_sum{{route="{route}"}} {h.total:.6f}')
            out.append(f'targeting_http_request_duration_seconds_count{{route="{route}"}} {h.n}')

        stats = engine.stats
        family("targeting_decisions_total", "counter", "Decisions made by the engine (all callers).")
        out.append(f"targeting_decisions_total {stats.get('decisions', 0)}")
        family("targeting_decide_invalid_total", "counter", "Decide requests refused as invalid.")
        out.append(f"targeting_decide_invalid_total {stats.get('decide_invalid', 0)}")
        family("targeting_decisions_degraded_total", "counter",
               "Decisions answered in degraded mode over HTTP, by reason.")
        reasons = self.degraded or Counter({"store_unavailable": 0})
        for reason, n in sorted(reasons.items()):
            out.append(f'targeting_decisions_degraded_total{{reason="{reason}"}} {n}')
        family("targeting_store_unavailable_total", "counter", "Store fetches that failed or were short-circuited.")
        out.append(f"targeting_store_unavailable_total {stats.get('store_unavailable', 0)}")
        for key, name in (("impressions", "impressions"), ("events", "events")):
            family(f"targeting_{name}_recorded_total", "counter", f"{name.capitalize()} accepted.")
            out.append(f"targeting_{name}_recorded_total {stats.get(key, 0)}")
        family("targeting_reloads_total", "counter", "Rule reloads by result.")
        out.append(f'targeting_reloads_total{{result="ok"}} {stats.get("reload_ok", 0)}')
        out.append(f'targeting_reloads_total{{result="failed"}} {stats.get("reload_failed", 0)}')

        index = engine.index
        family("targeting_index_info", "gauge", "The serving campaign index (value is always 1).")
        out.append(f'targeting_index_info{{version="{index.version}"}} 1')
        family("targeting_campaigns", "gauge", "Campaigns in the serving index.")
        out.append(f"targeting_campaigns {index.n_campaigns}")
        family("targeting_model_info", "gauge", "The click model in use (value is always 1).")
        out.append(f'targeting_model_info{{version="{_label(getattr(engine.model, "version", "?"))}"}} 1')

        store = engine.store
        state = getattr(store, "breaker_state", None)
        if isinstance(state, str):
            family("targeting_store_breaker_state", "gauge", "Circuit breaker state of the store (1 = current).")
            for s in ("closed", "open", "half_open"):
                out.append(f'targeting_store_breaker_state{{state="{s}"}} {int(state == s)}')
            for attr in ("failures", "short_circuits"):
                v = getattr(store, attr, None)
                if isinstance(v, int):
                    family(f"targeting_store_{attr}_total", "counter", f"Store {attr.replace('_', ' ')}.")
                    out.append(f"targeting_store_{attr}_total {v}")
        from targeting.delivery.metrics import log_metrics  # the delivery log's own families

        out.extend(log_metrics(engine))
        return "\n".join(out) + "\n"


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class MetricsMiddleware:
    """Pure ASGI middleware: one counter and one histogram sample per HTTP request,
    labelled by the route template (``/v1/audiences/export/{job}``), not the raw path."""

    def __init__(self, app: Callable[..., Any], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(path, scope["method"], status, time.perf_counter() - start)
