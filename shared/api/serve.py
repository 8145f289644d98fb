"""Turns a handler's (body, status) into an HTTP response; maps errors to JSON without leaking internals."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import redis
from flask import Request, Response
from werkzeug.exceptions import RequestEntityTooLarge

from shared.api import access
from shared.api.errors import ApiError
from shared.api.handlers import Handler, route
from shared.api.validation import MAX_BODY_BYTES, limit_body
from shared.api.validation import request_id as valid_request_id
from shared.gateway import get_gateway
from shared.observability import logs

log = logging.getLogger(__name__)


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


def serve(request: Request, handler: Handler | None = None) -> Response:
    """Run one handler (or the route table when none is given)."""
    # Only an id that is safe to echo, log and forward is kept; anything else gets a fresh one.
    request_id = (valid_request_id(request.headers.get("X-Request-Id"))
                  or valid_request_id(request.headers.get("X-CloudTasks-TaskName")) or uuid.uuid4().hex)
    ctx = logs.request_id.set(request_id)
    gw = None
    try:
        gw = get_gateway()
        if request.method == "OPTIONS":
            return access.preflight_response(gw.settings, request)
        h = handler or route(request)
        limit_body(request)
        access.authorize(gw, request, access.required_scope(h))
        body, status = h(gw, request)
        resp = _json(body, status, request_id)
    except ApiError as exc:
        resp = _json(exc.body(), exc.status, request_id, exc.headers)
    except RequestEntityTooLarge:
        resp = _json(ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes", code="too_large").body(), 413,
                     request_id)
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
    return resp
