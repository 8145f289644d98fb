"""The async serve path (functions-framework's ASGI mode): the read routes without a thread per request.

Same handlers' validation, access control and error shapes as `serve.serve` (same JSON bodies, same status
codes): the Starlette request is viewed as a Flask request for the shared parsing, the read itself goes
through the async reader (`shared.market.reader`), and for a read the inbound rate check and the cache read
share one Redis pipeline. Handlers that only do short blocking work (health, stats, metrics, dashboard, the API
description) run in a worker thread. Routes that stay synchronous (the older gateway's trading and balance
routes under legacy_api) are handed to the sync `serve` in a pool of their own.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import redis
from flask import Request as FlaskRequest
from flask import Response as FlaskResponse
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from shared.api import access, fleet
from shared.api import handlers as h
from shared.api.access_async import async_access_for
from shared.api.dashboard import dashboard, dashboard_feed
from shared.api.errors import ApiError
from shared.api.handlers import Handler, route
from shared.api.openapi import openapi_json
from shared.api.parts import Gateway, installed
from shared.api.serve import _check_method, _json, _routes_of, serve
from shared.api.validation import MAX_BODY_BYTES
from shared.api.validation import request_id as valid_request_id
from shared.market.admission import AdmissionRefused
from shared.market.reader import AsyncReader, blocking, reader_for
from shared.market.token import TokenUnavailableError
from shared.observability import logs

log = logging.getLogger(__name__)

# Read handlers answered by the async reader: handler -> kind.
READ_KINDS: dict[Handler, str] = {h.quotes: "quote", h.daily_prices: "daily", h.symbol_info: "info",
                                  h.index_quotes: "index"}
LEGACY_READS = (h.legacy_snapshot, h.legacy_daily_prices)
READS = frozenset((*READ_KINDS, *LEGACY_READS))
# Handlers with short blocking work only, run in a worker thread after the async access check.
THREADED = (h.health, h.stats, h.metrics, openapi_json, dashboard, dashboard_feed)
ASYNC_HANDLERS = frozenset((*READ_KINDS, *LEGACY_READS, *THREADED))

# Synchronous routes met by the local router (drain, orders...) get as many threads as a WSGI worker would.
_SYNC_POOL = ThreadPoolExecutor(max_workers=int(os.environ.get("THREADS", "64") or 64),
                                thread_name_prefix="kisgw-sync")


def flask_request(scope: MutableMapping[str, Any], body: bytes) -> FlaskRequest:
    """The ASGI request as a Flask request (for the handlers' shared parsing; nothing is re-read)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": "", "PATH_INFO": scope["path"],
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}", "REMOTE_ADDR": str(client[0]),
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        if name == "CONTENT_LENGTH":
            continue
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return FlaskRequest(environ)


class ReadRequest:
    """The few parts of a request the read routes look at (method, path, query, headers, body), read straight
    from the ASGI scope: building a full Flask request costs more than a cache hit's own work."""

    __slots__ = ("method", "path", "args", "headers", "environ", "_body")

    def __init__(self, scope: MutableMapping[str, Any], body: bytes) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        args: dict[str, str] = {}
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            args.setdefault(k, v)  # the first value, as Flask's request.args.get gives
        self.args = args
        self.headers = Headers(scope=scope)
        self.environ: dict[str, Any] = {}
        self._body = body

    def get_data(self) -> bytes:
        return self._body


def _from_flask(resp: FlaskResponse) -> Response:
    out = Response(resp.get_data(), status_code=resp.status_code)
    out.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    return out


def _answer(body: Any, status: int, request_id: str, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, str):  # HTML page, Prometheus text: exactly the sync path's response
        return _from_flask(_json(body, status, request_id, headers))
    out = Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status_code=status,
                   media_type="application/json")
    out.headers["X-Request-Id"] = request_id
    for k, v in (headers or {}).items():
        out.headers[k] = v
    return out


async def serve_async(request: Request, handler: Handler | None = None, *,
                      pick: Callable[[FlaskRequest], Handler] | None = None, function: str = "",
                      gateway: Callable[[], Gateway] = installed) -> Response:
    """Run one handler, or the route table when none is given (only the paths `function` serves in the
    deployment description), on the event loop. `gateway` gives this process's gateway (as for `serve`)."""
    try:
        body = await _read_body(request)
    except ApiError as exc:  # too large: answered before anything else is read
        rid = valid_request_id(request.headers.get("X-Request-Id")) or uuid.uuid4().hex
        return _answer(exc.body(), exc.status, rid, exc.headers)
    freq: Any = ReadRequest(request.scope, body)
    if handler is None and pick is not None:
        handler = pick(freq)
    found = handler
    if found is None:
        try:
            found = route(freq, _routes_of(function))
        except ApiError:
            found = None
    if found is not None and found not in ASYNC_HANDLERS:
        return await _serve_sync(flask_request(request.scope, body), found, function, gateway)
    if found is not None and found not in READS:
        freq = flask_request(request.scope, body)  # the threaded handlers get the full Flask request
    # Only an id that is safe to echo, log and forward is kept; anything else gets a fresh one (as `serve`).
    request_id = (valid_request_id(freq.headers.get("X-Request-Id"))
                  or valid_request_id(freq.headers.get("X-CloudTasks-TaskName")) or uuid.uuid4().hex)
    ctx = logs.request_id.set(request_id)
    gw: Gateway | None = None
    try:
        gw = gateway()
        if freq.method == "OPTIONS":
            resp = _from_flask(access.preflight_response(gw.settings, flask_request(request.scope, body)))
        else:
            if handler is not None:
                _check_method(freq, handler)
            hd = handler or route(freq, _routes_of(function))
            body, status = await _run(gw, freq, hd)
            resp = _answer(body, status, request_id)
    except ApiError as exc:
        resp = _answer(exc.body(), exc.status, request_id, exc.headers)
    except TokenUnavailableError as exc:
        log.warning("KIS token unavailable on %s %s", freq.method, freq.path[:100])
        resp = _answer({"error": {"code": "token_unavailable", "message": str(exc)[:200], "request_id": request_id}},
                       503, request_id, {"Retry-After": "30"})
    except redis.RedisError as exc:
        log.error("Redis unavailable on %s %s: %s", freq.method, freq.path[:100], type(exc).__name__)
        resp = _answer({"error": {"code": "unavailable", "message": "cache unavailable; retry shortly",
                                  "request_id": request_id}}, 503, request_id, {"Retry-After": "1"})
    except Exception:
        log.exception("unhandled error on %s %s", freq.method, freq.path[:100])
        resp = _answer({"error": {"code": "internal", "message": "internal error", "request_id": request_id}},
                       500, request_id)
    finally:
        logs.request_id.reset(ctx)
    if gw is not None:
        for k, v in access.cors_headers(gw.settings, freq.headers.get("Origin")).items():
            resp.headers[k] = v
        if time.monotonic() - gw.fleet_published_at >= fleet.PUBLISH_EVERY_S:
            # Due: this process's figures go to Redis from a worker thread, not on the loop.
            asyncio.get_running_loop().run_in_executor(None, fleet.maybe_publish, gw)
    return resp


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) beyond MAX_BODY_BYTES by its Content-Length or, chunked, as soon as it passes it."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"body is {length} bytes; at most {MAX_BODY_BYTES}", code="too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"body is larger than {MAX_BODY_BYTES} bytes", code="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _run(gw: Gateway, freq: FlaskRequest, hd: Handler) -> tuple[Any, int]:
    reader = reader_for(gw)
    await reader.start()
    checks = async_access_for(gw, reader)
    scope = access.required_scope(hd)
    principal = await checks.principal(freq, scope)
    freq.environ[access.PRINCIPAL_ENV] = principal

    kind, codes, bad = None, None, None
    try:
        if hd in READ_KINDS:
            kind = READ_KINDS[hd]
            codes, refresh, deadline = h.read_args(gw, freq, kind)
        elif hd is h.legacy_snapshot:
            kind, code, is_index = h.legacy_snapshot_args(freq)
            codes = [code]
        elif hd is h.legacy_daily_prices:
            code, days = h.legacy_daily_args(freq)
            kind, codes = "daily", [code]
    except ApiError as exc:  # answered after the rate check, as on the sync path (429 before 400)
        bad = exc
    slot = checks.slot_for(principal, scope)  # one member for both attempts: taking it twice takes one slot
    for attempt in (1, 2):
        pipe = reader.redis.pipeline(transaction=False)
        counted = await checks.add_rate_check(pipe, principal, scope)
        if slot is not None:
            await checks.add_slot_take(pipe, slot)
        if kind is not None and codes is not None:
            pipe.mget(reader.read_keys(kind, codes))
        replies = await pipe.execute(raise_on_error=False) if len(pipe) else []
        if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            await checks.load_scripts()  # Redis restarted or flushed its scripts
            continue
        for r in replies:
            if isinstance(r, Exception):
                raise r
        break
    taken = slot is not None and checks.slot_taken(replies[1 if counted else 0])
    try:
        if counted:
            checks.refuse_if_limited(replies[0], principal)
        if slot is not None and not taken:
            checks.refuse_in_flight(slot[2])
        if bad is not None:
            raise bad
        if kind is None:
            return await blocking(hd, gw, freq)
        raw = replies[-1]
        started = time.perf_counter()
        caller = h.admission_caller(freq)
        try:
            if hd in READ_KINDS:
                results = await reader.get(kind, codes or [], deadline, refresh, raw=raw, caller=caller)
                return h.read_reply(gw, kind, results, started)
            results = await reader.get(kind, codes or [], raw=raw, caller=caller)
        except AdmissionRefused as exc:
            raise h.refused(gw, kind, exc, None if hd in READ_KINDS else "data") from None
        code = (codes or [""])[0]
        if hd is h.legacy_snapshot:
            return h.legacy_snapshot_reply(code, is_index, results[code])
        return h.legacy_daily_reply(code, days, results[code])
    finally:
        if taken:
            assert slot is not None
            await checks.leave(slot[0], slot[1])


async def _serve_sync(freq: FlaskRequest, handler: Handler, function: str = "",
                      gateway: Callable[[], Gateway] = installed) -> Response:
    """A synchronous route (legacy_api's trading and balance routes) in the sync pool, answered as `serve`."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    resp = await loop.run_in_executor(_SYNC_POOL, ctx.run,
                                      lambda: serve(freq, handler, function=function, gateway=gateway))
    return _from_flask(resp)


def reader(gw: Gateway) -> AsyncReader:
    """This loop's reader of `gw` (for tests and the benchmark)."""
    return reader_for(gw)
