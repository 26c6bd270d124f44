"""Audience work off the event loop, bounded per advertiser (issue 19).

Reach, and the parsing of reach and export specs, is CPU work: on the event loop it
stalls every route, decide included. :class:`AudiencePool` runs it elsewhere, in one
of two modes (``Settings(audience_pool=...)``, ``TARGETING_AUDIENCE_POOL``):

* ``"process"``: a pool of ``workers`` spawned processes, each mapping the saved
  audience index (``AudienceIndex.load``: memory-mapped, so the pages are shared).
  Reach there holds no lock the server needs. Specs with retargeting read the
  in-process state store, so they still run on a thread.
* ``"thread"``: a dedicated thread pool (not Starlette's, which decide may use).
  Python-level work in it competes with the event loop for the GIL.

benchmarks/bench_isolation.py measures both: decide on one worker while one advertiser
floods reach with the heaviest spec the limits allow (200k users, 2 shared cores, load
average ~6 from other work). Decide p99 idle → flooded: thread 14.3 → 180 ms (12.6x)
and 15.8 → 156 ms (9.9x); process 17.5 → 143 ms (8.2x, workers at nice 10) and
15.0 → 95 ms (6.4x, at nice 19, which starved reach to 0.2 answers/s on the busy
machine). Flooded decide p50: thread 26-40 ms, process 13 ms at nice 10. So
``process`` (at nice 10) is the default; the workers' lower priority is what keeps the
server's process first when the cores are saturated.

Admission is bounded: at most ``per_advertiser`` tasks in flight per caller (an
advertiser id; operators and the open demo share one slot set each) and
``workers * QUEUE_FACTOR`` in all; beyond either a request is refused at once with
429 and ``Retry-After`` rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from targeting.errors import TargetingError, Unavailable
from targeting.spec import parse_spec

log = logging.getLogger("targeting.service")
T = TypeVar("T")
MODES = ("thread", "process")
QUEUE_FACTOR = 4
NICE = 10  # scheduling priority of the worker processes, below the server's


class Busy(TargetingError):
    """Too much audience work in flight for this caller or in all: HTTP 429."""

    status = 429
    retry_after = 1

    def __init__(self, message: str) -> None:
        super().__init__(message, path=None, code="too_many_requests")


@dataclass(frozen=True)
class ReachQuery:
    """One reach request, as plain picklable data. ``exact``: the operator view;
    otherwise the advertiser view with noise keyed by ``secret``."""

    targeting: Any
    advertiser: str | None
    breakdown: tuple[str, ...] = ()
    funnel: bool = False
    overlap: Any = None
    exact: bool = False
    secret: bytes | None = None
    now: float = 0.0


def answer_reach(taxonomy: Any, index: Any, store: Any, q: ReachQuery) -> dict[str, Any]:
    """Parse, count and (for advertisers) protect one reach query: the whole CPU part
    of ``POST /v1/reach``, run in a worker thread or process."""
    spec = parse_spec(q.targeting, taxonomy, advertiser=q.advertiser, path="targeting")
    if spec.uses_retargeting and q.advertiser is None:
        raise TargetingError("a spec with retargeting needs the advertiser whose events it uses",
                             path="advertiser")
    overlap = None
    if q.overlap is not None:
        overlap = parse_spec(q.overlap, taxonomy, advertiser=q.advertiser, path="overlap")
    if index is None:
        raise Unavailable("no profiles loaded: start the service with --profiles PATH to preview "
                          "reach or export audiences", path="profiles")
    answer: dict[str, Any] = index.reach(spec, breakdown=list(q.breakdown), advertiser=q.advertiser,
                                         store=store, now=q.now, funnel=q.funnel, overlap=overlap)
    if q.exact:
        return answer
    from targeting.audience import privacy

    # noise is keyed by everything asked, so varying the second spec cannot difference the first
    key = privacy.spec_key(spec, taxonomy)
    if overlap is not None:
        key += "|overlap|" + privacy.spec_key(overlap, taxonomy)
    return privacy.advertiser_view(answer, key, secret=q.secret)


def mentions(raw: Any, key: str) -> bool:
    """Whether ``key`` appears as a mapping key anywhere in ``raw`` (bounded by the body size)."""
    stack = [raw]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if key in v:
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


# ------------------------------------------------------------ worker processes
_CHILD: tuple[Any, Any] | None = None


def _child_init(taxonomy: Any, directory: str) -> None:
    global _CHILD
    from targeting.audience import AudienceIndex

    try:  # background work: when the cores are busy, the server's own process goes first
        os.nice(NICE)
    except OSError:
        pass
    _CHILD = (taxonomy, AudienceIndex.load(directory, taxonomy))


def _child_reach(q: ReachQuery) -> tuple[str, Any]:
    """In a worker process: ("ok", answer) or ("error", (status, body)) (a TargetingError
    does not survive pickling with its path and code)."""
    assert _CHILD is not None
    try:
        return "ok", answer_reach(_CHILD[0], _CHILD[1], None, q)
    except TargetingError as e:
        return "error", (e.status, e.to_dict())


def _child_ping() -> bool:
    return _CHILD is not None


class _Remote(TargetingError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("message")), path=body.get("path"),  # type: ignore[arg-type]
                         code=str(body.get("code", "invalid")))
        self.status = status


# ----------------------------------------------------------------- the pool
class AudiencePool:
    def __init__(self, engine: Any, *, mode: str = "thread", workers: int = 2, per_advertiser: int = 2) -> None:
        if mode not in MODES:
            raise ValueError(f"audience pool mode is thread or process, not {mode!r}")
        self.engine = engine
        self.mode = mode
        self.workers = max(1, workers)
        self.per_advertiser = max(1, per_advertiser)
        self.max_in_flight = self.workers * QUEUE_FACTOR
        self.in_flight: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()  # refused_advertiser, refused_pool, tasks
        self._threads: ThreadPoolExecutor | None = None
        self._procs: Executor | None = None
        self._tmp: Path | None = None

    # lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start the worker processes (``process`` mode, when profiles are loaded)."""
        index = getattr(self.engine, "audience", None)
        if self.mode != "process" or index is None or not hasattr(index, "shards"):
            return
        directory = getattr(index, "directory", None)
        if directory is None:  # an index built in memory: workers map a saved copy
            self._tmp = Path(tempfile.mkdtemp(prefix="targeting-reach-"))
            directory = index.save(self._tmp / "index", adopt=False)
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._procs = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_child_init,
                                          initargs=(self.engine.taxonomy, str(directory)))
        for _ in range(self.workers):
            self._procs.submit(_child_ping)  # spawn and load now, not on the first request
        log.info("reach runs in %d worker processes over %s", self.workers, directory)

    def close(self) -> None:
        if self._procs is not None:
            self._procs.shutdown(wait=True, cancel_futures=True)
            self._procs = None
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="audience")
        return self._threads

    # admission ---------------------------------------------------------------
    @contextmanager
    def slot(self, caller: str) -> Iterator[None]:
        """One task in flight for ``caller``; Busy when over its share or the pool's."""
        if self.in_flight[caller] >= self.per_advertiser:
            self.stats["refused_advertiser"] += 1
            raise Busy(f"{self.in_flight[caller]} audience requests of this caller are still running "
                       f"(at most {self.per_advertiser} at once); retry when one has answered")
        if sum(self.in_flight.values()) >= self.max_in_flight:
            self.stats["refused_pool"] += 1
            raise Busy("the audience workers are busy; retry in a moment")
        self.in_flight[caller] += 1
        self.stats["tasks"] += 1
        try:
            yield
        finally:
            self.in_flight[caller] -= 1
            if not self.in_flight[caller]:
                del self.in_flight[caller]

    # work --------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread (callers hold a :meth:`slot`)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread_pool(), lambda: fn(*args))

    async def reach(self, q: ReachQuery) -> dict[str, Any]:
        """:func:`answer_reach` in a worker process, or a thread (callers hold a :meth:`slot`)."""
        eng = self.engine
        loop = asyncio.get_running_loop()
        procs = self._procs
        if procs is not None and not mentions(q.targeting, "retargeting") \
                and not mentions(q.overlap, "retargeting"):
            try:
                status, value = await loop.run_in_executor(procs, _child_reach, q)
            except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh
                log.error("an audience worker process died; restarting the pool")
                if self._procs is procs:
                    procs.shutdown(wait=False, cancel_futures=True)
                    self._procs = None
                    self.start()
                raise Busy("the audience workers were restarting; retry in a moment") from None
            if status == "error":
                raise _Remote(*value)
            return value  # type: ignore[no-any-return]
        return await loop.run_in_executor(
            self._thread_pool(), lambda: answer_reach(eng.taxonomy, eng.audience, eng.store, q))

    def metrics(self) -> dict[str, int]:
        return {**self.stats, "in_flight": sum(self.in_flight.values())}


# ------------------------------------------------------------------ metrics
def render_metrics(pool: AudiencePool | None, jobs: Any, store: Any) -> str:
    """Prometheus text for the isolation counters (appended to /metrics; the names are
    listed in the lead's merge notes so they carry over to prometheus-client)."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    p = pool.metrics() if pool is not None else {}
    family("targeting_audience_refused_total", "counter",
           "Reach/export requests refused because their caller or the audience workers were busy.",
           [('{reason="advertiser_busy"}', p.get("refused_advertiser", 0)),
            ('{reason="pool_busy"}', p.get("refused_pool", 0))])
    family("targeting_audience_in_flight", "gauge", "Reach/export tasks running or queued on the workers.",
           [("", p.get("in_flight", 0))])
    j = jobs.metrics() if jobs is not None and hasattr(jobs, "metrics") else {}
    family("targeting_export_jobs_started_total", "counter", "Export jobs started.", [("", j.get("started", 0))])
    family("targeting_export_jobs_finished_total", "counter", "Export jobs finished, by result.",
           [('{result="done"}', j.get("done", 0)), ('{result="failed"}', j.get("failed", 0))])
    family("targeting_export_jobs_refused_total", "counter", "Export jobs refused, by reason.",
           [(f'{{reason="{r}"}}', j.get(f"refused_{r}", 0))
            for r in ("concurrent", "daily", "storage", "platform_data")])
    family("targeting_export_disk_full_total", "counter", "Export jobs failed because the disk filled up.",
           [("", j.get("disk_full", 0))])
    family("targeting_export_files_expired_total", "counter", "Export files deleted after their TTL.",
           [("", j.get("expired", 0))])
    family("targeting_export_storage_bytes", "gauge", "Bytes of finished, unexpired export files.",
           [("", j.get("stored_bytes", 0))])
    family("targeting_export_jobs_active", "gauge", "Export jobs queued or running.", [("", j.get("active", 0))])
    if hasattr(store, "evicted") and hasattr(store, "users"):
        family("targeting_memory_store_users", "gauge", "Users held by the in-memory state store.",
               [("", store.users)])
        family("targeting_memory_store_evicted_users_total", "counter",
               "Users evicted from the in-memory state store at its cap.", [("", store.evicted)])
    return "\n".join(out) + "\n"


def install_retry_after(app: Any) -> None:
    """429s of the audience side (:class:`Busy`, export quotas) carry ``Retry-After``."""
    from targeting.audience.jobs import QuotaExceeded

    from .errors import JSONResponse, status_of

    async def handler(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, TargetingError)
        wait = getattr(exc, "retry_after", 60)
        return JSONResponse({"error": {"path": None, **exc.to_dict()}}, status_code=status_of(exc),
                            headers={"Retry-After": str(wait)})

    app.add_exception_handler(Busy, handler)
    app.add_exception_handler(QuotaExceeded, handler)
