"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", "path"}}``.

Bodies are read here too, because "bad input never gives a 5xx" starts at the
bytes: content type, size limit (enforced while reading, before parsing),
empty body, invalid JSON, non-object JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from targeting.errors import TargetingError

log = logging.getLogger("targeting.service")


class JSONResponse(Response):
    """orjson-rendered JSON (FastAPI's own ORJSONResponse is deprecated)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


class PayloadTooLarge(TargetingError):
    status = 413

    def __init__(self, message: str) -> None:
        super().__init__(message, path=None, code="too_large")


class UnsupportedMediaType(TargetingError):
    status = 415

    def __init__(self, message: str) -> None:
        super().__init__(message, path=None, code="unsupported_media_type")


def error_body(code: str, message: str, path: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "path": path, **extra}}


def status_of(e: TargetingError) -> int:
    # the engine says "too_large" for oversized batches; HTTP has a word for that
    return 413 if e.code == "too_large" else e.status


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, or a TargetingError (400/413/415)."""
    ctype = request.headers.get("content-type")
    if ctype:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"send a JSON body with Content-Type: application/json, not {media!r}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise TargetingError("bad Content-Length header", path=None, code="invalid")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    if not body.strip():
        raise TargetingError("empty body: send a JSON object", path=None, code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise TargetingError(f"invalid JSON: {e}", path=None, code="invalid_json") from None
    if not isinstance(data, dict):
        raise TargetingError(f"the body must be a JSON object, not {_json_type(data)}", path=None,
                             code="invalid")
    return data


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the contract's shape."""

    async def targeting_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TargetingError)
        body = exc.to_dict()
        body.setdefault("path", None)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": body}, status_code=status_of(exc), headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        path = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return JSONResponse(error_body("invalid", str(first.get("msg", "invalid request")), path or None),
                            status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def too_deep(request: Request, exc: Exception) -> Response:
        # JSON nested deeper than Python's recursion limit (orjson accepts 1024 levels)
        return JSONResponse(error_body("too_deep", "the body is nested too deeply"), status_code=400)

    async def missing_module(request: Request, exc: Exception) -> Response:
        # another part of the product (events, audience, model) is not in this build yet
        name = getattr(exc, "name", None) or ""
        if not name.startswith("targeting"):
            return await unexpected(request, exc)
        log.warning("%s %s needs %s, which is not installed", request.method, request.url.path, name)
        return JSONResponse(error_body("unavailable", f"this build has no {name}; the feature is unavailable"),
                            status_code=409)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal error; it has been logged"), status_code=500)

    app.add_exception_handler(TargetingError, targeting_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(ModuleNotFoundError, missing_module)
    app.add_exception_handler(Exception, unexpected)
