"""The HTTP service (contract §4): ``create_app(engine, settings)``.

Handlers only translate HTTP to :class:`targeting.Engine` calls and back: read
the body (size-limited, JSON object), check the caller's role, call the engine,
render with orjson. Validation lives in the engine, so the error paths here are
the engine's paths (``requests[3].geo.city``).

A single decide runs inline in an ``async`` handler when the store is in-process,
and in the threadpool (plain ``def`` semantics) when it is a network store that
waits on I/O (Redis). Measured (benchmarks/http, one worker, 2,000 campaigns):
inline costs 1.5-1.8x less CPU per request (asgi.py); over HTTP, on a shared
two-core machine, alternating A/B runs (run.py --ab) gave inline/threadpool
1.24x, 1.09x and 0.83x in throughput, and inline had the lower p99 in 10 of 11
rounds. ``Settings(offload=...)`` / ``TARGETING_OFFLOAD=0|1`` overrides the choice.
Batches follow the same rule. With the in-process store a batch is pure Python
work under the GIL: in the threadpool it would still hold the loop (the loop
gets the GIL back only every switch interval, 5 ms) and costs the thread
handoffs. Measured (one worker, 2,000 campaigns, 100 per batch): inline 21.4k and
22.7k decisions/s against 13.3k and 14.6k in the threadpool; under a mix of 500
decides/s and 60 batches/s, decide p99 27.7-28.8 ms inline against 29.9-30.8 ms,
batch p50 14-15 ms against 24-28 ms. Batches over ``INLINE_BATCH`` requests (up to
1,000: tens of milliseconds) go to the threadpool all the same, where the loop gets
a turn every 5 ms instead of waiting for the whole batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import request_response
from starlette.staticfiles import StaticFiles

from targeting.engine import Engine, settle_heap
from targeting.errors import NotFound, TargetingError, Unavailable
from targeting.stores.memory import MemoryStore

from . import errors, schemas
from .auth import OPEN, KeyRing, Principal
from .delivery_routes import delivery_health
from .delivery_routes import include as include_delivery
from .errors import JSONResponse, read_json
from .metrics import Metrics, MetricsMiddleware
from .offload import AudiencePool, ReachQuery, install_retry_after, render_metrics
from .workers import ReloadSignal

log = logging.getLogger("targeting.service")
T = TypeVar("T")
STATIC_DIR = Path(__file__).parent / "static"
MAX_SPEC_DEPTH = 32
EXPORT_FORMATS = ("parquet", "csv")
INLINE_BATCH = 200  # decide_batch inline up to this many requests (~7 ms at 2,000 campaigns)
HOT_ROUTES = frozenset({"/v1/decide", "/v1/decide/batch", "/v1/noop"})
# reach/export bodies: the largest spec the parse limits allow (64 alternatives, 4,096
# values) is ~40 KB of JSON; real ones are under 2 KB
SPEC_BODY_BYTES = 64 << 10


@dataclass(frozen=True)
class Settings:
    """How the app serves an engine. ``auth=None`` runs open (the local demo).

    ``offload``: run decide in the threadpool (``True``) or inline on the event
    loop (``False``); ``None`` = inline only for an in-process store (module
    docstring). ``bench`` adds ``POST /v1/noop`` (benchmarks only).
    ``jobs``: an export-jobs object (default: ``targeting.audience.jobs.ExportJobs``
    over ``export_dir`` (default: a temporary directory) with ``export_limits`` (quotas, TTL), made on first use). ``privacy_secret``: the noise secret of the
    advertiser view, shared by all workers (default: one per process).
    ``reload_signal``: a file the workers of one server share so that a reload
    reaches all of them (service/workers.py).
    ``close_engine``: close the store on shutdown.
    ``audience_pool``: where reach runs, ``"thread"`` or ``"process"`` (service/offload.py),
    with ``audience_workers`` workers and ``audience_per_advertiser`` requests in flight per caller.
    """

    auth: KeyRing | None = None
    max_body_bytes: int = 1 << 20
    bench: bool = False
    offload: bool | None = None
    export_dir: Path | None = None
    static_dir: Path | None = STATIC_DIR
    jobs: Any = None
    privacy_secret: bytes | None = None
    reload_signal: Path | None = None
    close_engine: bool = False
    title: str = "targeting"
    export_limits: Any = None
    audience_pool: str = "process"
    audience_workers: int = 2
    audience_per_advertiser: int = 2


def create_app(engine: Engine, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    state = _State(engine, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth is None:
            log.warning("no --auth file: the service is OPEN, every endpoint answers anyone "
                        "(fine for a local demo, never for production)")
        else:
            log.info("API keys loaded: %d", len(settings.auth))
        log.info("serving index %s (%d campaigns), store %s, decide %s",
                 engine.index.version, engine.index.n_campaigns, type(engine.store).__name__,
                 "in threadpool" if state.offload else "inline on the event loop")
        settle_heap()  # the index and the framework live as long as the process
        state.pool.start()
        follower = None
        if state.signal is not None:
            follower = asyncio.create_task(state.signal.follow(engine))
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            state.close()

    app = FastAPI(title=settings.title, version=_version(), lifespan=lifespan,
                  default_response_class=JSONResponse,
                  description="Ad targeting: decide, reach, export, events. Every endpoint but /healthz "
                              "needs `Authorization: Bearer <key>` when the service runs with --auth.")
    app.state.targeting = state
    errors.install(app)
    install_retry_after(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    limit = settings.max_body_bytes

    async def call(fn: Callable[..., T], *args: Any) -> T:
        if state.offload:
            return await run_in_threadpool(fn, *args)
        return fn(*args)

    if settings.bench:  # first in the route table: the baseline pays the least routing
        @app.post("/v1/noop", tags=["operations"], summary="Benchmark baseline: parse JSON, answer JSON")
        async def noop(request: Request) -> Response:
            state.principal(request).allow("ad_server")
            body = await read_json(request, limit)
            return JSONResponse({"request_id": body.get("request_id"), "decisions": []})

    # ------------------------------------------------------------- decide
    @app.post("/v1/decide", tags=["decide"], openapi_extra=schemas.body(schemas.DECIDE),
              summary="One impression → ranked decisions")
    async def decide(request: Request) -> Response:
        state.principal(request).allow("ad_server")
        body = await read_json(request, limit)
        answer = await call(engine.decide, body)
        metrics.count_answers([answer])
        return JSONResponse(answer)

    @app.post("/v1/decide/batch", tags=["decide"], openapi_extra=schemas.body(schemas.BATCH),
              summary="Many impressions, one store round trip; answers in the same order")
    async def decide_batch(request: Request) -> Response:
        state.principal(request).allow("ad_server")
        body = await read_json(request, limit)
        _only(body, ("requests",))
        requests = _required(body, "requests")
        if isinstance(requests, list) and len(requests) > INLINE_BATCH:  # bound the loop's stall
            answers = await run_in_threadpool(engine.decide_batch, requests)
        else:
            answers = await call(engine.decide_batch, requests)
        metrics.count_answers([a for a in answers if "error" not in a])
        return JSONResponse({"responses": answers})

    # -------------------------------------------------------------- state
    @app.post("/v1/impressions", tags=["state"], openapi_extra=schemas.body(schemas.IMPRESSIONS),
              summary="Report served impressions (caps and budgets)")
    async def impressions(request: Request) -> Response:
        state.principal(request).allow("ad_server")
        body = await read_json(request, limit)
        _only(body, ("impressions",))
        return _rows_answer(await call(engine.record_impressions, _required(body, "impressions")))

    @app.post("/v1/events", tags=["state"], openapi_extra=schemas.body(schemas.EVENTS),
              summary="Report retargeting events (visit, click, add_to_cart, purchase)")
    async def events(request: Request) -> Response:
        who = state.principal(request)
        who.allow("ad_server", "advertiser")
        body = await read_json(request, limit)
        _only(body, ("events",))
        rows = _required(body, "events")
        if who.role == "advertiser" and isinstance(rows, list):
            # an advertiser reports its own first-party events only; nothing is stored otherwise
            for i, row in enumerate(rows):
                if isinstance(row, dict) and "advertiser" in row:
                    who.own_advertiser(row["advertiser"], f"events[{i}].advertiser")
        return _rows_answer(await call(engine.record_events, rows))

    # ---------------------------------------------------------- campaigns
    @app.get("/v1/campaigns", tags=["campaigns"], summary="The serving campaigns (an advertiser sees its own)")
    async def campaigns(request: Request) -> Response:
        who = state.principal(request)
        who.allow("ad_server", "advertiser")
        index = engine.index
        rows = engine.campaigns()
        if who.role == "advertiser":
            rows = [c for c in rows if c["advertiser"] == who.advertiser]
        if who.role != "admin":  # a file name, never a server path
            rows = [{**c, "source": Path(c["source"]).name} if c.get("source") else c for c in rows]
        return JSONResponse({"index_version": index.version, "count": len(rows), "campaigns": rows})

    @app.post("/v1/campaigns/reload", tags=["campaigns"], openapi_extra=schemas.body(schemas.EMPTY, False),
              summary="Reload the rules directory atomically (admin)")
    async def reload(request: Request) -> Response:
        state.principal(request).allow()
        if await _has_body(request):
            body = await read_json(request, limit)
            _only(body, ())
        result = await run_in_threadpool(engine.reload)
        if state.signal is not None:
            state.signal.announce(result["index_version"])
        return JSONResponse(result)

    # ---------------------------------------------------------- audiences
    @app.post("/v1/reach", tags=["audiences"], openapi_extra=schemas.body(schemas.REACH),
              summary="Audience size for a spec (advertisers get the privacy-protected view)")
    async def reach(request: Request) -> Response:
        who = state.principal(request)
        who.allow("advertiser")
        with state.pool.slot(_caller(who)):  # taken before the body is read: a refusal costs nothing
            return await reach_admitted(who, request)

    async def reach_admitted(who: Principal, request: Request) -> Response:
        body = await read_json(request, SPEC_BODY_BYTES)
        _only(body, ("targeting", "advertiser", "breakdown", "funnel", "overlap"))
        advertiser, raw = state.raw_spec(who, body)
        breakdown = body.get("breakdown") or []
        if not isinstance(breakdown, list) or not all(isinstance(d, str) for d in breakdown):
            raise TargetingError("breakdown is a list of dimension names", path="breakdown")
        funnel = body.get("funnel", False)
        if not isinstance(funnel, bool):
            raise TargetingError("funnel is true or false", path="funnel")
        overlap = None
        if body.get("overlap") is not None:  # a second spec: how many users both reach
            _, overlap = state.raw_spec(who, {"targeting": body["overlap"], "advertiser": advertiser}, "overlap")
        q = ReachQuery(raw, advertiser, tuple(breakdown), funnel, overlap, exact=who.exact_reach,
                       secret=state.privacy_secret, now=engine.clock())
        return JSONResponse(await state.pool.reach(q))

    @app.post("/v1/audiences/export", tags=["audiences"], status_code=202,
              openapi_extra=schemas.body(schemas.EXPORT), summary="Start an audience export job")
    async def export(request: Request) -> Response:
        who = state.principal(request)
        who.allow("advertiser")
        with state.pool.slot(_caller(who)):
            return await export_admitted(who, request)

    async def export_admitted(who: Principal, request: Request) -> Response:
        body = await read_json(request, SPEC_BODY_BYTES)
        _only(body, ("targeting", "advertiser", "format", "hash_salt"))
        advertiser, raw = state.raw_spec(who, body)
        fmt = body.get("format", "parquet")
        if fmt not in EXPORT_FORMATS:
            raise TargetingError(f"format is parquet or csv, not {fmt!r}", path="format")
        salt = body.get("hash_salt")
        if salt is not None and (not isinstance(salt, str) or not salt):
            raise TargetingError("hash_salt is a string", path="hash_salt")
        # parsed (and the export policy checked) on a worker thread: a bad spec is a 4xx now
        start = state.jobs().start
        if who.role == "advertiser":  # advertisers download only their first-party audiences
            job = await state.pool.run(lambda: start(engine, raw, advertiser, fmt, salt, first_party_only=True))
        else:
            job = await state.pool.run(start, engine, raw, advertiser, fmt, salt)
        return JSONResponse(_public_job(job, who.exact_reach), status_code=202)

    @app.get("/v1/audiences/export/{job}", tags=["audiences"],
              summary="An export job's state; ?download=1 streams the file when done")
    async def export_job(request: Request, job: str, download: bool = False) -> Response:
        who = state.principal(request)
        who.allow("advertiser")
        if download:
            return state.download(who, job)
        return JSONResponse(_public_job(state.job(who, job), who.exact_reach))

    @app.get("/v1/audiences/export/{job}/file", tags=["audiences"], summary="Download a finished export")
    async def export_file(request: Request, job: str) -> Response:
        who = state.principal(request)
        who.allow("advertiser")
        return state.download(who, job)

    # -------------------------------------------------------- operations
    @app.get("/healthz", tags=["operations"], summary="Liveness (no key needed)")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok", "index_version": engine.index.version, **delivery_health(engine)})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (admin)")
    async def prometheus(request: Request) -> Response:
        state.principal(request).allow()
        text = metrics.render(engine) + render_metrics(state.pool, state._jobs, engine.store)  # issue 19
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    _include_taxonomy(app, state)
    include_delivery(app, state)  # /v1/clicks, /v1/reports, /reports (service/delivery_routes.py)
    _mount_static(app, settings.static_dir)
    _fast_path(app, HOT_ROUTES)
    return app


class _State:
    """Per-app resources and the small helpers handlers share."""

    def __init__(self, engine: Engine, settings: Settings, metrics: Metrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.offload = (not isinstance(engine.store, MemoryStore)) if settings.offload is None else settings.offload
        self._jobs = settings.jobs
        # one noise secret however many processes answer reach (worker processes have their own default)
        self.privacy_secret = settings.privacy_secret or _process_secret()
        self.pool = AudiencePool(engine, mode=settings.audience_pool, workers=settings.audience_workers,
                                 per_advertiser=settings.audience_per_advertiser)
        self.signal = ReloadSignal(settings.reload_signal) if settings.reload_signal is not None else None

    def principal(self, request: Request) -> Principal:
        if self.settings.auth is None:
            return OPEN
        return self.settings.auth.authenticate(request.headers.get("authorization"))

    def raw_spec(self, who: Principal, body: Mapping[str, Any], path: str = "targeting") -> tuple[str | None, Any]:
        """The acting advertiser and the raw spec of a reach/export body, after the cheap
        checks (presence, depth, whose retargeting data); parsing is the worker's job."""
        advertiser = who.own_advertiser(body.get("advertiser"))
        if "targeting" not in body:
            raise TargetingError("targeting is required: a targeting spec ({} matches everyone)",
                                 path="targeting")
        raw = body["targeting"]
        if _depth(raw) > MAX_SPEC_DEPTH:
            raise TargetingError(f"{path} is nested more than {MAX_SPEC_DEPTH} levels deep", path=path)
        if who.role == "advertiser":
            for rule_path, other in _rule_advertisers(raw, path):
                if other != who.advertiser:
                    who.own_advertiser(other, rule_path)  # raises Forbidden
        return advertiser, raw

    def jobs(self) -> Any:
        if self._jobs is None:
            try:
                from targeting.audience.jobs import ExportJobs
            except ImportError as e:
                raise Unavailable(f"audience exports are not available in this build ({e})") from None
            self._jobs = ExportJobs(self.settings.export_dir, limits=self.settings.export_limits)
        return self._jobs

    def job(self, who: Principal, job_id: str) -> dict[str, Any]:
        """A job the caller may see; another advertiser's job is reported as not found."""
        missing = NotFound(f"no export job {job_id!r}", path="job")
        if self._jobs is None:  # no job was ever started here
            raise missing
        try:
            job = self.jobs().get(job_id)
        except (KeyError, NotFound):
            raise missing from None
        if job is None:
            raise missing
        if who.role == "advertiser" and job.get("advertiser") != who.advertiser:
            raise missing
        return dict(job)

    def download(self, who: Principal, job_id: str) -> Response:
        job = self.job(who, job_id)
        if job.get("state") == "expired":
            from targeting.audience.jobs import Gone

            raise Gone(f"export job {job_id!r} expired and its file was deleted; start a new export")
        if job.get("state") not in (None, "done"):
            raise TargetingError(f"export job {job_id!r} is {job.get('state')}; the file is ready when done",
                                 path="job", code="not_ready")
        path = self.jobs().path(job_id)
        if path is None or not Path(path).is_file():
            raise TargetingError(f"export job {job_id!r} has no file yet", path="job", code="not_ready")
        p = Path(path)
        media = "text/csv" if p.suffix == ".csv" else "application/vnd.apache.parquet"
        return FileResponse(p, media_type=media, filename=f"audience-{job_id}{p.suffix}")

    def close(self) -> None:
        self.pool.close()
        for name in ("close", "shutdown"):
            fn = getattr(self._jobs, name, None)
            if callable(fn):
                fn()
                break
        if self.settings.close_engine and self.engine.delivery is not None:
            self.engine.delivery.close()  # flush the delivery log
        if self.settings.close_engine:
            fn = getattr(self.engine.store, "close", None)
            if callable(fn):
                fn()


# ---------------------------------------------------------------- helpers
def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for k in body:
        if k not in allowed:
            known = f"; known: {', '.join(allowed)}" if allowed else "; this endpoint takes no fields"
            raise TargetingError(f"unknown field {k!r}{known}", path=k)


def _required(body: Mapping[str, Any], key: str) -> Any:
    if key not in body:
        raise TargetingError(f"{key} is required: a list", path=key)
    return body[key]


def _rows_answer(result: dict[str, Any]) -> Response:
    """200 with per-row errors when some rows were good; 400 when every row was bad."""
    errs = result.get("errors") or []
    if errs and not result.get("accepted"):
        first = errs[0]
        return JSONResponse(errors.error_body(
            first.get("code", "invalid"), f"no row accepted; first: {first.get('message')}",
            first.get("path"), errors=errs), status_code=400)
    return JSONResponse(result)


async def _has_body(request: Request) -> bool:
    if request.headers.get("content-length") not in (None, "0"):
        return True
    return "chunked" in request.headers.get("transfer-encoding", "")


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_SPEC_DEPTH:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def _rule_advertisers(raw: Any, path: str) -> list[tuple[str, Any]]:
    """(path, advertiser) of every retargeting rule that names an advertiser."""
    found: list[tuple[str, Any]] = []
    if not isinstance(raw, dict):
        return found
    rt = raw.get("retargeting")
    if isinstance(rt, dict):
        for side, rules in rt.items():
            if isinstance(rules, list):
                for i, r in enumerate(rules):
                    if isinstance(r, dict) and "advertiser" in r:
                        found.append((f"{path}.retargeting.{side}[{i}].advertiser", r["advertiser"]))
    subs = raw.get("any_of")
    if isinstance(subs, list):
        for i, s in enumerate(subs):
            found.extend(_rule_advertisers(s, f"{path}.any_of[{i}]"))
    return found


def _process_secret() -> bytes:
    from targeting.audience.privacy import process_secret

    return process_secret()


def _caller(who: Principal) -> str:
    """Whose share of the audience workers a request uses (known before the body is read)."""
    return who.describe()


def _public_job(job: Mapping[str, Any], exact: bool = True) -> dict[str, Any]:
    """A job as callers see it: no server file paths; a download link once done; counts
    rounded to 2 significant digits unless the caller is an operator."""
    out = {k: v for k, v in job.items() if k != "path"}
    if not exact:
        from targeting.audience.privacy import shown_count

        for k in ("rows", "total"):
            if isinstance(out.get(k), int):
                out[k] = shown_count(out[k])
    if out.get("state") == "done" and "id" in out:
        out["download"] = f"/v1/audiences/export/{out['id']}/file"
    return out


def _fast_path(app: FastAPI, paths: frozenset[str]) -> None:
    """Serve the hot routes with Starlette's plain request/response wrapper.

    Their handlers take only the ``Request``, so FastAPI's per-request dependency
    solving does nothing for them but costs ~100 µs (benchmarks/http/asgi.py);
    the routes stay declared with FastAPI for matching and the OpenAPI page.
    """
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path in paths:
            route.app = request_response(route.endpoint)


def _include_taxonomy(app: FastAPI, state: _State) -> None:
    """``GET /v1/taxonomy`` (service/taxonomy_route.py, the UI's vocabulary), behind any valid key."""
    try:
        from .taxonomy_route import router
    except ImportError:
        return

    async def any_key(request: Request) -> None:
        state.principal(request)

    app.state.engine = state.engine
    app.include_router(router, dependencies=[Depends(any_key)])


def _mount_static(app: FastAPI, static: Path | None) -> None:
    index = static / "index.html" if static else None
    if static is not None and static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        if index is not None and index.is_file():
            return FileResponse(index, media_type="text/html")
        return RedirectResponse("/docs")


def _version() -> str:
    from targeting import __version__

    return __version__
