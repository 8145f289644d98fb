"""HTTP handlers: parse and validate the request, call the service, shape the reply.

Each returns (body, status). `functions/main.py` exposes them as Cloud Functions; the local stack serves
them all on one base URL through `route()`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Request

from shared.api import fleet
from shared.api.access import PRINCIPAL_ENV
from shared.api.errors import ApiError, bad_request, not_found
from shared.api.parts import Gateway
from shared.api.validation import (
    json_body,
    parse_bool,
    parse_deadline,
    parse_index_codes,
    parse_search,
    parse_symbol,
    parse_symbols,
)
from shared.config import CALL_CLASSES
from shared.market.admission import AdmissionRefused
from shared.market.answers import TOKEN_REASON
from shared.market.kinds import KINDS
from shared.market.symbol_master import refresh_from_settings, with_master_names
from shared.market.token import TokenUnavailableError, rejected_fingerprint, token_fingerprint
from shared.observability.metrics import cache_hit_ratio
from shared.schedules import REFRESH_TOKEN_EVERY_MIN, parse_schedule_time, preload_due

log = logging.getLogger(__name__)
Reply = tuple[Any, int]
Handler = Callable[[Gateway, Request], Reply]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _results(results: dict[str, Any]) -> dict[str, Any]:
    return {code: r.to_json() for code, r in results.items()}


READS = {"quote": "quotes", "daily": "daily", "info": "symbols", "index": "indices"}  # kind -> answer key


def read_args(gw: Gateway, request: Request, kind: str) -> tuple[list[str], bool, float]:
    """The validated (codes, refresh, deadline_s) of a read route (shared by the sync and async paths)."""
    if request.method != "GET":
        raise ApiError(405, f"{request.method} not allowed; use GET", code="method_not_allowed",
                       headers={"Allow": "GET"})
    s = gw.settings
    args = request.args
    if kind == "index":
        codes = parse_index_codes(args.get("codes"))
    else:
        codes = parse_symbols(args.get("symbols"), s.max_symbols_per_request)
    refresh = parse_bool(args.get("refresh"), "refresh")
    deadline = parse_deadline(args.get("deadline_ms"), s.request_deadline_s, max_s=s.max_deadline_ms / 1000)
    return codes, refresh, deadline


def read_reply(gw: Gateway, kind: str, results: dict[str, Any], started: float) -> Reply:
    """The answer of a read route from the service's results (shared by the sync and async paths)."""
    gw.metrics.observe("request_seconds", time.perf_counter() - started, kind=kind)
    for r in results.values():
        gw.metrics.inc("symbol_results_total", kind=kind, status=r.status)
    if results and all(r.status == "error" and str(r.reason or "").startswith(TOKEN_REASON) for r in results.values()):
        # Nothing cached to serve and no token yet: the refresh function was asked; say so as one status.
        raise ApiError(503, "no KIS token yet (a refresh was requested); nothing cached to serve",
                       code="token_unavailable", headers={"Retry-After": "30"})
    body = _results(results)
    if gw.symbols is not None:
        with_master_names(gw.symbols, kind, body)
    return {READS[kind]: body, "served_at": _now_iso()}, 200


def _read(gw: Gateway, request: Request, kind: str, key: str) -> Reply:
    codes, refresh, deadline = read_args(gw, request, kind)
    started = time.perf_counter()
    results = _get(gw, request, kind, codes, deadline, refresh, key)
    return read_reply(gw, kind, results, started)


def symbol_search(gw: Gateway, request: Request) -> Reply:
    """GET /v1/symbols/search?q=삼성&limit=20: the symbol master by code prefix, Korean or English name."""
    if request.method != "GET":
        raise ApiError(405, f"{request.method} not allowed; use GET", code="method_not_allowed",
                       headers={"Allow": "GET"})
    query, limit = parse_search(request.args.get("q"), request.args.get("limit"))
    if gw.symbols is None or not gw.symbols.loaded():
        raise ApiError(503, "the symbol master is not loaded yet; search is back after the next preload",
                       code="unavailable", headers={"Retry-After": "60"})
    return {"query": query, "results": gw.symbols.search(query, limit), "master": gw.symbols.status(),
            "served_at": _now_iso()}, 200


def _get(gw: Gateway, request: Request, kind: str, codes: list[str], deadline: float | None = None,
         refresh: bool = False, key: str = "data") -> dict[str, Any]:
    """The service's answer for the calling credential; refused admissions become 429/503 with the data."""
    try:
        return gw.reader.get(kind, codes, deadline, refresh, caller=admission_caller(request))
    except AdmissionRefused as exc:
        raise refused(gw, kind, exc, key) from None


def admission_caller(request: Request) -> str | None:
    """Who the per-caller cap on new pending symbols counts: API keys only (the local dev key and Google service
    accounts are the operator's own); the cap per kind holds for everyone. Shared by the sync and async paths."""
    principal = request.environ.get(PRINCIPAL_ENV)
    return principal.id if principal is not None and getattr(principal, "kind", "") == "api_key" else None


def refused(gw: Gateway, kind: str, exc: AdmissionRefused, key: str | None = None) -> ApiError:
    """The 429/503 answer (Retry-After, every symbol's answer with cached data) of a refused admission."""
    gw.metrics.inc("admission_refused_total", kind=kind, reason=exc.code)
    return ApiError(exc.status, str(exc), code=exc.code, headers={"Retry-After": str(exc.retry_after_s)},
                    data={key or READS[kind]: _results(exc.results), "served_at": _now_iso()})


def quotes(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "quote", "quotes")


def daily_prices(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "daily", "daily")


def symbol_info(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "info", "symbols")


def index_quotes(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "index", "indices")


def health(gw: Gateway, request: Request) -> Reply:
    checks: dict[str, Any] = {}
    serving = True
    try:
        gw.redis.ping()
        checks["redis"] = "ok"
        checks["queue_depth"] = {k: gw.drain.pending[k].size() for k in KINDS}
    except redis.RedisError as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
        serving = False
    checks["breaker"] = gw.breaker.state
    checks["token"] = gw.tokens.status()
    if gw.symbols is not None and checks["redis"] == "ok":
        checks["symbol_master"] = gw.symbols.status()  # how old it is; "check: off" when never loaded
    status = "ok" if serving and checks["breaker"] == "closed" else ("degraded" if serving else "down")
    return {"status": status, "checks": checks, "kis_env": gw.settings.kis_env, "time": _now_iso()}, (
        200 if serving else 503)


def stats(gw: Gateway, request: Request) -> Reply:
    m = fleet.view(gw)  # every function process's figures, not only this one's
    body: dict[str, Any] = {"time": _now_iso(), "metrics": m.snapshot(), "breaker": gw.breaker.state,
                            "token": gw.tokens.status(), "settings": {
                                "kis_env": gw.settings.kis_env, "kis_limit": gw.settings.kis_limit,
                                "budget": gw.settings.budget, "batch_size": gw.settings.effective_batch_size}}
    try:
        body["limiter"] = gw.limiter.snapshot()
        body["queue_depth"] = {k: gw.drain.pending[k].size() for k in KINDS}
    except redis.RedisError as exc:
        body["redis"] = f"down: {type(exc).__name__}"
    body["cache_hit_ratio"] = cache_hit_ratio(m)
    body["alerts"] = gw.alerts.recent()
    return body, 200


def metrics(gw: Gateway, request: Request) -> Reply:
    m = fleet.view(gw)
    return m.prometheus(fleet.gauges_with(gw, m)), 200


# ---- internal targets (Cloud Tasks / Cloud Scheduler pushes) ----------------------------------------

def drain(gw: Gateway, request: Request) -> Reply:
    body = json_body(request.get_data(), allowed={"kind", "call_class", "slot"}, required=("kind",))
    kind = body["kind"]
    if kind not in KINDS:
        raise bad_request(f"kind {str(kind)[:20]!r} is not one of {', '.join(KINDS)}", "kind")
    if "call_class" in body and body["call_class"] not in CALL_CLASSES:
        raise bad_request(f"call_class must be one of {', '.join(CALL_CLASSES)}", "call_class")
    if "slot" in body and (not isinstance(body["slot"], int) or isinstance(body["slot"], bool)):
        raise bad_request("slot must be an integer", "slot")
    report = gw.drain.drain(kind)
    return {"kind": kind, "batches": report.batches, "fetched": report.fetched, "failed": report.failed,
            "released": report.released, "stopped": report.stopped or None}, 200


def refresh_token(gw: Gateway, request: Request) -> Reply:
    try:
        if _rejected_token_named(gw, request):
            # A reader's request after KIS refused the stored token (EGW00121/EGW00123): replace it now.
            current = gw.tokens.current()
            gw.tokens.refresh(reason="token rejected by KIS", rejected=current.access_token if current else None)
            return {"refreshed": True, "token": gw.tokens.status()}, 200
        refreshed = gw.tokens.refresh_if_due(every_s=REFRESH_TOKEN_EVERY_MIN * 60)
    except TokenUnavailableError as exc:
        return {"refreshed": False, "error": str(exc)}, 503
    return {"refreshed": refreshed, "token": gw.tokens.status()}, 200


def _rejected_token_named(gw: Gateway, request: Request) -> bool:
    """True when the push names (by fingerprint) the token the store holds now as refused by KIS."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    fp = rejected_fingerprint(str(body.get("reason", ""))) if isinstance(body, dict) else None
    if fp is None:
        return False
    current = gw.tokens.current()
    return current is not None and token_fingerprint(current.access_token) == fp


def preload(gw: Gateway, request: Request) -> Reply:
    body = json_body(request.get_data(), allowed={"symbols", "force"})
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise bad_request("force must be true or false", "force")
    today = datetime.now(gw.calendar.tz).date()
    if not force and not gw.calendar.is_trading_day(today):
        return {"skipped": f"{today.isoformat()} is not a KRX trading day"}, 200
    scheduled = request.headers.get("X-CloudScheduler-ScheduleTime")
    if not force and scheduled:
        # The cron fires at both possible preload times; only the one before today's opening works.
        try:
            due = preload_due(parse_schedule_time(scheduled), gw.calendar, gw.settings)
        except ValueError:
            raise bad_request("X-CloudScheduler-ScheduleTime is not an RFC 3339 time",
                              "X-CloudScheduler-ScheduleTime") from None
        if not due:
            return {"skipped": "not today's preload time"}, 200
    symbols = list(gw.settings.preload_symbols)
    extra = body.get("symbols", [])
    if not isinstance(extra, list):
        raise bad_request("symbols must be a list of codes", "symbols")
    symbols += [parse_symbol(s, "symbols") for s in extra]
    master = refresh_from_settings(gw.symbols, gw.settings) if gw.symbols is not None else None
    queued = gw.drain.preload(dict.fromkeys(symbols))
    return {"queued": queued, "symbols": len(set(symbols)), "symbol_master": master}, 200


# ---- routes of the older Flask gateway, kept so its jobs work unchanged ---------------------------

def legacy_snapshot_args(request: Request) -> tuple[str, str, bool]:
    """(kind, code, is_index) of the older gateway's snapshot route."""
    body = json_body(request.get_data(), allowed={"stock_code", "is_index"}, required=("stock_code",))
    is_index = body.get("is_index", False)
    if not isinstance(is_index, bool):
        raise bad_request("is_index must be true or false", "is_index")
    code = body["stock_code"]
    if not isinstance(code, str):
        raise bad_request("stock_code must be a string", "stock_code")
    code = code.strip()
    if is_index:
        return "index", parse_index_codes(code, "stock_code")[0], True
    return "quote", parse_symbol(code, "stock_code"), False


def legacy_snapshot_reply(code: str, is_index: bool, result: Any) -> Reply:
    ok = result.status in ("fresh", "stale")
    return {"success": ok, "stock_code": code, "is_index": is_index, "data": result.to_json()}, 200


def legacy_snapshot(gw: Gateway, request: Request) -> Reply:
    kind, code, is_index = legacy_snapshot_args(request)
    return legacy_snapshot_reply(code, is_index, _get(gw, request, kind, [code])[code])


def legacy_daily_args(request: Request) -> tuple[str, int]:
    """(code, days) of the older gateway's daily-prices route."""
    body = json_body(request.get_data(), allowed={"stock_code", "days"}, required=("stock_code",))
    code = parse_symbol(body["stock_code"], "stock_code")
    days = body.get("days", 30)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 30:
        raise bad_request("days must be an integer 1..30", "days")
    return code, days


def legacy_daily_reply(code: str, days: int, result: Any) -> Reply:
    data = result.to_json()
    if "bars" in data:
        data["bars"] = data["bars"][:days]
    return {"success": result.status in ("fresh", "stale"), "stock_code": code, "data": data}, 200


def legacy_daily_prices(gw: Gateway, request: Request) -> Reply:
    code, days = legacy_daily_args(request)
    return legacy_daily_reply(code, days, _get(gw, request, "daily", [code])[code])


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/v1/quotes"): quotes,
    ("GET", "/v1/daily-prices"): daily_prices,
    ("GET", "/v1/symbols"): symbol_info,
    ("GET", "/v1/indices"): index_quotes,
    ("GET", "/v1/symbols/search"): symbol_search,
    ("GET", "/health"): health,
    ("GET", "/stats"): stats,
    ("GET", "/metrics"): metrics,
    ("POST", "/internal/drain"): drain,
    ("POST", "/internal/refresh-token"): refresh_token,
    ("POST", "/internal/preload"): preload,
    ("POST", "/api/market-data/snapshot"): legacy_snapshot,
    ("POST", "/api/market-data/daily-prices"): legacy_daily_prices,
}


def _extend_routes() -> None:
    # Orders and the API description live in their own modules; they join the one route table here.
    from shared.api.dashboard import dashboard, dashboard_feed
    from shared.api.openapi import openapi_json
    from shared.api.orders import ORDER_ROUTES

    ROUTES.update(ORDER_ROUTES)
    ROUTES[("GET", "/openapi.json")] = openapi_json
    ROUTES[("GET", "/dashboard")] = dashboard
    ROUTES[("GET", "/dashboard/feed")] = dashboard_feed


_extend_routes()


def route(request: Request, routes: dict[tuple[str, str], Handler] | None = None) -> Handler:
    routes = ROUTES if routes is None else routes
    path = request.path.rstrip("/") or "/"
    handler = routes.get((request.method, path))
    if handler is not None:
        return handler
    allowed = sorted(m for (m, p) in routes if p == path)
    if allowed:
        raise ApiError(405, f"{request.method} not allowed on {path}; use {', '.join(allowed)}",
                       code="method_not_allowed", headers={"Allow": ", ".join(allowed)})
    raise not_found(f"no route {request.method} {path[:100]}")
