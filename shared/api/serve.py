"""Turns a handler's (body, status) into an HTTP response; maps errors to JSON without leaking internals."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import redis
from flask import Request, Response
from werkzeug.exceptions import RequestEntityTooLarge

from shared.api import access, fleet
from shared.api.errors import ApiError
from shared.api.parts import Gateway, installed
from shared.api.read_answer import RawJson
from shared.api.registry import Handler
from shared.api.routes import ROUTES
from shared.api.validation import MAX_BODY_BYTES, limit_body
from shared.api.validation import request_id as valid_request_id
from shared.market.token import TokenUnavailableError
from shared.observability import logs

log = logging.getLogger(__name__)


def request_id_of(headers: Any) -> str:
    """The caller's X-Request-Id (or Cloud Tasks' task name) when it is safe to echo, log and forward; anything
    else gets a fresh one (both serve paths)."""
    return (valid_request_id(headers.get("X-Request-Id")) or valid_request_id(headers.get("X-CloudTasks-TaskName"))
            or uuid.uuid4().hex)


def error_reply(exc: Exception, request_id: str, method: str, path: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """(body, status, headers) of a failed request, for both serve paths: a client error as its ApiError says,
    a missing token or Redis as 503 with Retry-After, anything else as 500 without internals (which may hold
    secrets); the type and trace go to the log."""
    if isinstance(exc, ApiError):
        return exc.body(), exc.status, exc.headers
    if isinstance(exc, RequestEntityTooLarge):
        return ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes", code="too_large").body(), 413, {}
    if isinstance(exc, TokenUnavailableError):
        # Only the refresh function issues tokens; it was asked (Cloud Tasks). Say so, without the token.
        log.warning("KIS token unavailable on %s %s", method, path[:100])
        return ({"error": {"code": "token_unavailable", "message": str(exc)[:200], "request_id": request_id}}, 503,
                {"Retry-After": "30"})
    if isinstance(exc, redis.RedisError):
        # Without Redis there is no cache, limiter or queue: say so and let the caller come back.
        log.error("Redis unavailable on %s %s: %s", method, path[:100], type(exc).__name__)
        return ({"error": {"code": "unavailable", "message": "cache unavailable; retry shortly",
                           "request_id": request_id}}, 503, {"Retry-After": "1"})
    log.error("unhandled error on %s %s", method, path[:100], exc_info=exc)
    return {"error": {"code": "internal", "message": "internal error", "request_id": request_id}}, 500, {}


def _json(body: Any, status: int, headers: dict[str, str] | None = None, *, request_id: str) -> Response:
    if isinstance(body, str):
        html = body.lstrip().lower().startswith("<!doctype html>")
        resp = Response(body, status=status, mimetype="text/html" if html else "text/plain; version=0.0.4")
    elif isinstance(body, RawJson):
        resp = Response(bytes(body), status=status, mimetype="application/json")
    else:
        resp = Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                        mimetype="application/json")
    resp.headers["X-Request-Id"] = request_id
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def serve(request: Request, handler: Handler | None = None, *, function: str = "",
          gateway: Callable[[], Gateway] = installed) -> Response:
    """Run one handler, or the route table when none is given (only the paths `function` serves in the
    deployment description, so a public function never reaches /internal/*). `gateway` gives this process's
    gateway (the entry points pass the composition root's `get_gateway`)."""
    request_id = request_id_of(request.headers)
    ctx = logs.request_id.set(request_id)
    gw = None
    try:
        gw = gateway()
        if request.method == "OPTIONS":
            return access.preflight_response(gw.settings, request)
        if handler is not None:
            ROUTES.check_method(request, handler)
        h = handler or ROUTES.find(request, function)
        limit_body(request)
        access.authorize(gw, request, ROUTES.scope_of(h))
        body, status = h(gw, request)
        resp = _json(body, status, request_id=request_id)
    except Exception as exc:
        resp = _json(*error_reply(exc, request_id, request.method, request.path), request_id=request_id)
    finally:
        if gw is not None:
            access.release(gw, request)
        logs.request_id.reset(ctx)
    if gw is not None:
        access.add_cors_headers(gw.settings, request, resp)
        fleet.maybe_publish(gw)
        if not gw.answered.is_set():
            gw.answered.set()  # the background preparation may start (gateway._prepare)
    return resp
