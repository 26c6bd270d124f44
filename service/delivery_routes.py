"""``POST /v1/clicks``, ``GET /v1/reports`` and the ``/reports`` page (contract §10).

``include(app, state)`` (one line in ``create_app``) adds them. Handlers only
translate HTTP to :mod:`targeting.delivery` calls, like the rest of the service.
Without a delivery attached to the engine (``targeting.delivery.attach``) clicks
and reports answer 503 saying so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from targeting.errors import TargetingError, Unavailable

from . import errors
from .errors import JSONResponse, read_json

STATIC = Path(__file__).parent / "static"


def delivery_health(engine: Any) -> dict[str, Any]:
    """``{"log": state}`` for /healthz: ``ok``, ``degraded`` (writes failing or the queue over half
    full: rows may be dropped) or ``off`` (ids but no log); ``{}`` without a delivery attached."""
    d = getattr(engine, "delivery", None)
    return {"log": d.status()["state"]} if d is not None else {}


def include(app: FastAPI, state: Any) -> None:
    engine = state.engine
    limit = state.settings.max_body_bytes
    router = APIRouter()

    def delivery() -> Any:
        d = engine.delivery
        if d is None:
            raise Unavailable("impression ids and the delivery log are off in this service "
                              "(targeting.delivery.attach)", path="log")
        return d

    @router.post("/v1/clicks", tags=["state"], summary="Report clicks by impression id (each counted once)")
    async def clicks(request: Request) -> Response:
        state.principal(request).allow("ad_server")
        body = await read_json(request, limit)
        for k in body:
            if k != "clicks":
                raise TargetingError(f"unknown field {k!r}; known: clicks", path=k)
        if "clicks" not in body:
            raise TargetingError("clicks is required: a list", path="clicks")
        d = delivery()
        result = await run_in_threadpool(d.record_clicks, engine, body["clicks"])
        errs = result["errors"]
        if errs and not result["accepted"] and not result["duplicates"]:
            first = errs[0]
            return JSONResponse(errors.error_body(first.get("code", "invalid"),
                                                  f"no row accepted; first: {first.get('message')}",
                                                  first.get("path"), errors=errs), status_code=400)
        return JSONResponse(result)

    @router.get("/v1/reports", tags=["reports"],
                summary="Delivery report: impressions, clicks, CTR, spend, eCPM (CSV with Accept: text/csv)")
    async def reports(request: Request) -> Response:
        from targeting.delivery import reports as rep

        who = state.principal(request)
        who.allow("ad_server", "advertiser")
        known = {"from", "to", "by", "advertiser", "campaign", "dims", "tz"}
        for k in request.query_params:
            if k not in known:
                raise TargetingError(f"unknown parameter {k!r}; known: {', '.join(sorted(known))}", path=k)
        q = rep.parse_query(dict(request.query_params))
        q["advertiser"] = who.own_advertiser(q.get("advertiser"))
        budget = None
        if "campaign" in q:
            idx = engine.index
            pos = idx.position.get(q["campaign"])
            if pos is not None:
                c = idx.campaigns[pos]
                if who.role == "advertiser":
                    who.own_advertiser(c.advertiser, "campaign")
                budget = c.daily_budget
        d = delivery()
        if d.writer is None:
            raise Unavailable("this service keeps no delivery log", path="log")
        answer = await run_in_threadpool(lambda: rep.report(
            d.writer.directory, start=q["start"], end=q["end"], by=q["by"], dims=q["dims"],
            advertiser=q["advertiser"], campaign=q.get("campaign"), tz=q["tz"],
            private=who.role in ("advertiser", "open"), daily_budget=budget))
        if "text/csv" in request.headers.get("accept", ""):
            return Response(rep.to_csv(answer["rows"]), media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": 'attachment; filename="report.csv"'})
        return JSONResponse(answer)

    @router.get("/reports", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "reports.html", media_type="text/html")

    app.include_router(router)
