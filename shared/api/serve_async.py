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
import logging
import os
import random
import sys
import time
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import redis
from flask import Request as FlaskRequest
from flask import Response as FlaskResponse
from starlette.requests import Request
from starlette.responses import Response

from shared.api import access, fleet, read_answer
from shared.api import handlers as h
from shared.api.access_async import async_access_for
from shared.api.errors import ApiError
from shared.api.parts import Gateway, installed
from shared.api.read_answer import encode
from shared.api.registry import Handler
from shared.api.routes import ROUTES
from shared.api.serve import _json, error_reply, request_id_of, serve
from shared.api.validation import MAX_BODY_BYTES
from shared.market.admission import AdmissionRefused
from shared.market.reader import blocking, reader_for
from shared.market.symbol_master import master_rows
from shared.observability import logs

log = logging.getLogger(__name__)

# From the route table (each route says how this path runs it): read handlers answered by the async reader
# (handler -> kind for the /v1 reads; the older gateway's reads), and every handler run here rather than on
# the sync path (the reads, and those with short blocking work only, run in a worker thread).
READ_KINDS: dict[Handler, str] = ROUTES.read_kinds
READS = ROUTES.reads
ASYNC_HANDLERS = ROUTES.asgi

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


class HeaderMap(dict[str, str]):
    """Request headers by lower-case name, the first value of a repeated one (as Starlette's and Flask's
    `headers.get` give); `get` takes any case. Built once per request: each lookup is one dict access."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())


def _header_map(scope: MutableMapping[str, Any]) -> HeaderMap:
    out = HeaderMap()
    has = dict.__contains__
    put = dict.__setitem__
    for k, v in scope.get("headers", ()):
        name = k.decode("latin-1").lower()
        if not has(out, name):
            put(out, name, v.decode("latin-1"))
    return out


class ReadRequest:
    """The few parts of a request the read routes look at (method, path, query, headers, body), read straight
    from the ASGI scope: building a full Flask request costs more than a cache hit's own work."""

    __slots__ = ("method", "path", "query", "headers", "environ", "_body", "_args")

    def __init__(self, scope: MutableMapping[str, Any], body: bytes, headers: HeaderMap | None = None) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers = headers if headers is not None else _header_map(scope)
        self.environ: dict[str, Any] = {}
        self._body = body
        self._args: dict[str, str] | None = None

    @property
    def args(self) -> dict[str, str]:
        """The query parameters, the first value of each (as Flask's request.args.get gives). Read-only: the
        same mapping is shared by the requests with the same query."""
        if self._args is None:
            self._args = _query_args(self.query)
        return self._args

    def get_data(self) -> bytes:
        return self._body


_QUERIES: dict[bytes, dict[str, str]] = {}  # recent raw query strings, parsed
_QUERIES_MAX = 4096


def _query_args(query: bytes) -> dict[str, str]:
    got = _QUERIES.get(query)
    if got is None:
        got = {}
        if query:
            for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                got.setdefault(k, v)
        if len(_QUERIES) >= _QUERIES_MAX:
            _QUERIES.clear()
        _QUERIES[query] = got
    return got


def _request_id(headers: HeaderMap) -> str:
    """`request_id_of` for the async path: the same checks of what the caller sent; a fresh id (32 hex digits,
    as uuid4().hex gives) without building a UUID when it sent none. From the process's pseudo-random generator
    (seeded from the OS at start and again in each forked worker), not a system call per request: an id
    correlates logs, it guards nothing, and at a few thousand requests a second the call cost about 3 % of the
    event loop."""
    has = dict.__contains__  # the names are lower case already
    if has(headers, "x-request-id") or has(headers, "x-cloudtasks-taskname"):
        return request_id_of(headers)
    return f"{random.getrandbits(128):032x}"


def _from_flask(resp: FlaskResponse) -> Response:
    out = Response(resp.get_data(), status_code=resp.status_code)
    out.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    return out


def _answer(body: Any, status: int, request_id: str, headers: dict[str, str] | None = None,
            vary_origin: bool = False) -> Response:
    """The response; `vary_origin`: add `Vary: Origin` (what cors_headers gives a request without an Origin),
    here rather than through Starlette's header view."""
    if isinstance(body, str):  # HTML page, Prometheus text: exactly the sync path's response
        out = _from_flask(_json(body, status, headers, request_id=request_id))
        if vary_origin:
            out.raw_headers = [(k, v) for k, v in out.raw_headers if k != b"vary"] + [(b"vary", b"Origin")]
        return out
    data = encode(body)
    # Built directly (Starlette's header handling costs more than a cache hit's own work).
    out = Response.__new__(Response)
    out.status_code = status
    out.background = None
    out.body = data
    raw = [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json"),
           (b"x-request-id", request_id.encode("latin-1"))]
    if headers:
        for k, v in headers.items():
            if not (vary_origin and k.lower() == "vary"):
                raw.append((k.lower().encode("latin-1"), v.encode("latin-1")))
    if vary_origin:
        raw.append((b"vary", b"Origin"))
    out.raw_headers = raw
    return out


# (handler, method) pairs a single-handler function already accepted (the method check is the same each time).
_METHOD_OK: set[tuple[Handler, str]] = set()


def _method_allowed(freq: Any, handler: Handler) -> None:
    if (handler, freq.method) not in _METHOD_OK:
        ROUTES.check_method(freq, handler)
        _METHOD_OK.add((handler, freq.method))


def _may_have_body(scope: MutableMapping[str, Any], headers: HeaderMap) -> bool:
    has = dict.__contains__  # the names are lower case already
    return scope["method"] not in ("GET", "HEAD") or has(headers, "content-length") or has(headers, "transfer-encoding")


async def serve_async(request: Request, handler: Handler | None = None, *,
                      pick: Callable[[FlaskRequest], Handler] | None = None, function: str = "",
                      gateway: Callable[[], Gateway] = installed) -> Response:
    """Run one handler, or the route table when none is given (only the paths `function` serves in the
    deployment description), on the event loop. `gateway` gives this process's gateway (as for `serve`)."""
    if handler is not None:
        hit = _cache_hit(request.scope, handler, gateway)
        if hit is not None:
            return hit
    hdrs = _header_map(request.scope)
    try:
        body = await _read_body(request) if _may_have_body(request.scope, hdrs) else b""
    except ApiError as exc:  # too large: answered before anything else is read
        rid = _request_id(hdrs)
        return _answer(exc.body(), exc.status, rid, exc.headers)
    freq: Any = ReadRequest(request.scope, body, hdrs)
    if handler is None and pick is not None:
        handler = pick(freq)
    found = handler
    if found is None:
        try:
            found = ROUTES.find(freq, function)
        except ApiError:
            found = None
    if found is not None and found not in ASYNC_HANDLERS:
        return await _serve_sync(flask_request(request.scope, body), found, function, gateway)
    if found is not None and found not in READS:
        freq = flask_request(request.scope, body)  # the threaded handlers get the full Flask request
    request_id = _request_id(hdrs) if freq.headers is hdrs else request_id_of(freq.headers)
    ctx = logs.request_id.set(request_id)
    gw: Gateway | None = None
    origin = freq.headers.get("Origin")
    varied = False  # Vary: Origin set already (what cors_headers gives without an Origin)
    try:
        gw = gateway()
        if freq.method == "OPTIONS":
            resp = _from_flask(access.preflight_response(gw.settings, flask_request(request.scope, body)))
        else:
            if handler is not None:
                _method_allowed(freq, handler)
            hd = handler or ROUTES.find(freq, function)
            body, status = await _run(gw, freq, hd)
            varied = origin is None
            resp = _answer(body, status, request_id, vary_origin=varied)
    except Exception as exc:
        err_body, err_status, err_headers = error_reply(exc, request_id, freq.method, freq.path)
        varied = origin is None and gw is not None
        resp = _answer(err_body, err_status, request_id, err_headers, vary_origin=varied)
    finally:
        logs.request_id.reset(ctx)
    if gw is not None:
        _answered(gw, resp, origin, varied)
    return resp


def _answered(gw: Gateway, resp: Response, origin: str | None, varied: bool) -> None:
    """What every answer of the gateway gets: CORS headers (`Vary: Origin` when not `varied` already), and the
    process's bookkeeping (the background preparation may start, the fleet figures are published when due)."""
    if not gw.answered.is_set():
        gw.answered.set()  # the background preparation may start (gateway._prepare)
    if origin is None:
        if not varied:  # set without Starlette's header view
            resp.raw_headers = [(k, v) for k, v in resp.raw_headers if k != b"vary"] + [(b"vary", b"Origin")]
    else:
        for k, v in access.cors_headers(gw.settings, origin).items():
            resp.headers[k] = v
    if time.monotonic() - gw.fleet_published_at >= fleet.PUBLISH_EVERY_S:
        # Due: this process's figures go to Redis from a worker thread, not on the loop.
        asyncio.get_running_loop().run_in_executor(None, fleet.maybe_publish, gw)
    elif not gw.fleet_scheduled:
        fleet.maybe_publish(gw)  # not due: schedules the publication (a timer, once per period)


# Request headers after which the cache hit's lane leaves a request to the general path: what that path reads
# besides the API key and Origin (a request id to check, a body, an ID token).
_GENERAL_HEADERS = frozenset({b"x-request-id", b"x-cloudtasks-taskname", b"content-length", b"transfer-encoding",
                              b"authorization"})


def _cache_hit(scope: MutableMapping[str, Any], handler: Handler, gateway: Callable[[], Gateway]) -> Response | None:
    """The answer of a read that is a cache hit by decisions already made, or None (then the general path runs).

    Every decision here is one the general path made before and kept: the caller its key stands for with this
    Origin (`AsyncAccess.decided`), the validated query (`_ARGS_MEMO`), the rate check from the key's lease in
    this process, and the copies from the near cache; the answer is the general path's (`read_reply`,
    `_answer`, `_answered`). While the near cache is unchanged and the reader's moment has not passed, the
    query's last answer is taken again with its ages brought up to now (`read_answer.Kept`). Measured: a cache
    hit spent about as much in the general path's steps (headers as a mapping, the request object, the route
    table, four awaited checks) as in those decisions."""
    kind = READ_KINDS.get(handler)
    if kind is None or scope["method"] != "GET":
        return None
    presented = origin = None
    general = _GENERAL_HEADERS
    # Names as ASGI servers give them, lower case (a server that did not: its requests go the general way).
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            if presented is None:
                presented = value
        elif name == b"origin":
            if origin is None:
                origin = value.decode("latin-1")
        elif name in general:
            return None
    if presented is None:
        return None
    gw = gateway()
    reader = reader_for(gw)
    master = gw.symbols
    if not reader.started or (master is not None and master.due()):
        return None
    key = _args_key(gw, handler, "GET", scope.get("query_string", b""))
    args = _ARGS_MEMO.get(key)
    if args is None or args[1]:  # not validated yet, or a refresh
        return None
    checks = async_access_for(gw, reader)
    access_scope = ROUTES.scope_of(handler)
    principal = checks.decided(presented.decode("latin-1").strip(), origin, access_scope)
    if principal is None:
        return None
    started = time.perf_counter()
    near = reader.near
    now = reader.drain.clock.time()
    wall = time.time()
    rows = master_rows(master, kind)
    kept = read_answer.kept(key, near, now, rows)
    body = kept.body(now, wall) if kept is not None else None
    if kept is not None and body is not None:  # the same copies as the last hit of this query
        if not checks.admitted_locally(principal, access_scope):
            return None
        h.count_read(gw, kind, kept.outcomes, started)
        resp = _answer(body, 200, f"{random.getrandbits(128):032x}", vary_origin=origin is None)
        _answered(gw, resp, origin, True)
        return resp
    hit = reader.near_read(kind, args[0], now)
    if hit is None or not checks.admitted_locally(principal, access_scope):
        return None
    results, valid_until = hit
    request_id = f"{random.getrandbits(128):032x}"
    ctx = logs.request_id.set(request_id)
    try:
        outcomes = h.read_checked(gw, kind, results, started)
        kept = read_answer.Kept(h.READS[kind], results, rows, now, wall, outcomes, near, valid_until)
        read_answer.keep(key, kept)
        resp = _answer(kept.body(now, wall), 200, request_id, vary_origin=origin is None)
    except Exception as exc:
        err_body, err_status, err_headers = error_reply(exc, request_id, "GET", scope["path"])
        resp = _answer(err_body, err_status, request_id, err_headers, vary_origin=origin is None)
    finally:
        logs.request_id.reset(ctx)
    _answered(gw, resp, origin, True)
    return resp


# Validated arguments of recent read queries: a client polling the same symbols is not parsed again each time.
_ARGS_MEMO: dict[tuple[Any, ...], tuple[list[str], bool, float]] = {}
_ARGS_MEMO_MAX = 4096


def _args_key(gw: Gateway, hd: Handler, method: str, query: Any) -> tuple[Any, ...]:
    return (id(gw), hd, method, query)


def _read_args(gw: Gateway, freq: Any, hd: Handler, kind: str) -> tuple[list[str], bool, float]:
    query = getattr(freq, "query", None)
    key = _args_key(gw, hd, freq.method, query if query is not None else tuple(freq.args.items()))
    got = _ARGS_MEMO.get(key)
    if got is None:
        got = h.read_args(gw, freq, kind)  # raises for bad input: never kept
        if len(_ARGS_MEMO) >= _ARGS_MEMO_MAX:
            _ARGS_MEMO.clear()
        _ARGS_MEMO[key] = got
    codes, refresh, deadline = got
    return list(codes), refresh, deadline


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
    scope = ROUTES.scope_of(hd)
    principal = await checks.principal(freq, scope)
    freq.environ[access.PRINCIPAL_ENV] = principal

    kind, codes, bad, refresh, deadline = None, None, None, False, None
    try:
        if hd in READ_KINDS:
            kind = READ_KINDS[hd]
            codes, refresh, deadline = _read_args(gw, freq, hd, kind)
        elif hd is h.legacy_snapshot:
            kind, code, is_index = h.legacy_snapshot_args(freq)
            codes = [code]
        elif hd is h.legacy_daily_prices:
            code, days = h.legacy_daily_args(freq)
            kind, codes = "daily", [code]
    except ApiError as exc:  # answered after the rate check, as on the sync path (429 before 400)
        bad = exc
    # The rate check from this key's lease in this process, the answer from the near cache: a cache hit
    # usually costs no Redis round trip, and holds no in-flight slot (it is answered at once; the cap is for
    # requests that wait). A key whose lease ran out asks for the next one alone, on connections of its own
    # (the key's other requests wait for that one round trip, never behind a burst of misses' pipelines);
    # otherwise one pipeline carries the slot and the cache read.
    await checks.admit(principal, scope)  # 429 before anything else, as on the sync path
    reading = kind is not None and codes is not None and bad is None
    near = reader.near_hits(kind, codes) if reading and not refresh else None  # type: ignore[arg-type]
    # One member for both attempts (taking it twice takes one slot); none for a near-cache hit.
    slot = checks.slot_for(principal, scope) if near is None else None
    generation = reader.near.generation(kind) if kind is not None else 0
    replies: list[Any] = []
    for attempt in (1, 2):
        if slot is None and not (reading and near is None):
            break  # nothing to ask Redis
        commands: list[tuple[Any, ...]] = []
        if slot is not None:
            commands.append(await checks.slot_take(slot))
        if reading and near is None:
            commands.append(("MGET", *reader.read_keys(kind, codes)))  # type: ignore[arg-type]
        # One pipeline with the other requests of this loop step (reader.serve_batch: step_pipeline).
        replies = await reader.serve_batch.run(*commands)
        if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            await checks.load_scripts()  # Redis restarted or flushed its scripts
            continue
        for r in replies:
            if isinstance(r, Exception):
                raise r
        break
    taken = slot is not None and checks.slot_taken(replies[0])
    try:
        if slot is not None and not taken:
            checks.refuse_in_flight(slot[2])
        if bad is not None:
            raise bad
        if kind is None:
            return await blocking(hd, gw, freq)
        # The master's version check (and a reload) is blocking Redis work: in a worker thread, not the loop.
        await reader.master_checked()
        started = time.perf_counter()
        caller = h.admission_caller(freq)
        try:
            if near is not None:
                results = near
            else:
                results = await reader.get(kind, codes or [], deadline, refresh, raw=replies[-1],
                                           generation=generation, caller=caller)
        except AdmissionRefused as exc:
            raise h.refused(gw, kind, exc, None if hd in READ_KINDS else "data") from None
        if hd in READ_KINDS:
            return h.read_reply(gw, kind, results, started)
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
