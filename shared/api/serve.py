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
from shared.api.handlers import Handler, route
from shared.api.parts import Gateway, installed
from shared.api.validation import MAX_BODY_BYTES, limit_body
from shared.api.validation import request_id as valid_request_id
from shared.market.token import TokenUnavailableError
from shared.observability import logs

log = logging.getLogger(__name__)


def _check_method(request: Request, handler: Handler) -> None:
    """A function serving one handler answers only the methods its route declares (405 otherwise)."""
    from shared.api.handlers import ROUTES

    allowed = sorted({m for (m, _), h in ROUTES.items() if h is handler})
    if allowed and request.method not in allowed:
        raise ApiError(405, f"{request.method} not allowed; use {', '.join(allowed)}", code="method_not_allowed",
                       headers={"Allow": ", ".join(allowed)})


def _routes_of(function: str) -> dict[tuple[str, str], Handler] | None:
    if not function:
        return None
    from shared.api.handlers import ROUTES
    from shared.deployment import functions

    fn = functions()[function]
    return {(m, p): h for (m, p), h in ROUTES.items() if fn.serves(p)}


def _json(body: Any, status: int, request_id: str, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, str):
        html = body.lstrip().lower().startswith("<!doctype html>")
        resp = Response(body, status=status, mimetype="text/html" if html else "text/plain; version=0.0.4")
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
    # Only an id that is safe to echo, log and forward is kept; anything else gets a fresh one.
    request_id = (valid_request_id(request.headers.get("X-Request-Id"))
                  or valid_request_id(request.headers.get("X-CloudTasks-TaskName")) or uuid.uuid4().hex)
    ctx = logs.request_id.set(request_id)
    gw = None
    try:
        gw = gateway()
        if request.method == "OPTIONS":
            return access.preflight_response(gw.settings, request)
        if handler is not None:
            _check_method(request, handler)
        h = handler or route(request, _routes_of(function))
        limit_body(request)
        access.authorize(gw, request, access.required_scope(h))
        body, status = h(gw, request)
        resp = _json(body, status, request_id)
    except ApiError as exc:
        resp = _json(exc.body(), exc.status, request_id, exc.headers)
    except RequestEntityTooLarge:
        resp = _json(ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes", code="too_large").body(), 413,
                     request_id)
    except TokenUnavailableError as exc:
        # Only the refresh function issues tokens; it was asked (Cloud Tasks). Say so, without the token.
        log.warning("KIS token unavailable on %s %s", request.method, request.path[:100])
        resp = _json({"error": {"code": "token_unavailable", "message": str(exc)[:200], "request_id": request_id}},
                     503, request_id, {"Retry-After": "30"})
    except redis.RedisError as exc:
        # Without Redis there is no cache, limiter or queue: say so and let the caller come back.
        log.error("Redis unavailable on %s %s: %s", request.method, request.path[:100], type(exc).__name__)
        resp = _json({"error": {"code": "unavailable", "message": "cache unavailable; retry shortly",
                                "request_id": request_id}}, 503, request_id, {"Retry-After": "1"})
    except Exception:
        # Log the type and trace for operators; answer without internals (which may hold secrets).
        log.exception("unhandled error on %s %s", request.method, request.path[:100])
        resp = _json({"error": {"code": "internal", "message": "internal error", "request_id": request_id}},
                     500, request_id)
    finally:
        if gw is not None:
            access.release(gw, request)
        logs.request_id.reset(ctx)
    if gw is not None:
        access.add_cors_headers(gw.settings, request, resp)
        fleet.maybe_publish(gw)
    return resp
