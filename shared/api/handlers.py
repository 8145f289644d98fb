"""HTTP handlers: parse and validate the request (with the models of `shared.api.models`), call the service,
shape the reply.

Each returns (body, status). Their routes (method, path, scope, models) are declared in `shared.api.routes`;
the serve paths check method and scope from there before a handler runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api import fleet, read_answer, status
from shared.api.access import PRINCIPAL_ENV
from shared.api.errors import ApiError
from shared.api.parts import Gateway
from shared.api.read_answer import now_iso
from shared.api.registry import Reply
from shared.api.validation import json_body
from shared.config import Settings
from shared.lazy import lazy_module
from shared.market.admission import AdmissionRefused
from shared.market.answers import TOKEN_REASON
from shared.market.symbol_master import master_rows, refresh_from_settings
from shared.market.token import TokenUnavailableError, rejected_fingerprint, token_fingerprint
from shared.observability.metrics import LabelKey, cache_hit_ratio
from shared.observability.metrics import key_of as metrics_key
from shared.schedules import REFRESH_TOKEN_EVERY_MIN, parse_schedule_time, preload_due

if TYPE_CHECKING:
    from shared.api import models
else:
    # The input models (msgspec), imported by the first handler that validates input: health, stats, metrics
    # and the dashboard never load them.
    models = lazy_module("shared.api.models")

log = logging.getLogger(__name__)


def _results(results: dict[str, Any]) -> dict[str, Any]:
    return {code: r.to_json() for code, r in results.items()}


READS = {"quote": "quotes", "daily": "daily", "info": "symbols", "index": "indices"}  # kind -> answer key


READ_QUERIES = {"quote": "SymbolsRead", "daily": "SymbolsRead", "info": "SymbolsRead", "index": "IndexRead"}
_READ_PARAMS: dict[str, tuple[str, ...]] = {}  # kind -> its query model's parameters (filled on first use)


def read_query_model(kind: str) -> type[models.SymbolsRead] | type[models.IndexRead]:
    """The query model of a read kind (imports the input models on first use)."""
    found: type[models.SymbolsRead] | type[models.IndexRead] = getattr(models, READ_QUERIES[kind])
    return found


def _read_params(kind: str) -> tuple[str, ...]:
    params = _READ_PARAMS.get(kind)
    if params is None:
        params = _READ_PARAMS[kind] = tuple(read_query_model(kind).__struct_fields__)
    return params


def query_args(request: Request) -> Any:
    """The query parameters as a plain mapping (the first value of each, as Flask's `args.get` gives)."""
    args = request.args
    return args if type(args) is dict else args.to_dict()


def read_args(gw: Gateway, request: Request, kind: str) -> tuple[list[str], bool, float]:
    """The validated (codes, refresh, deadline_s) of a read route (shared by the sync and async paths)."""
    s = gw.settings
    args = request.args
    raw = tuple(args.get(name) for name in _read_params(kind))
    codes, refresh, deadline = _read_query(kind, raw, s.max_symbols_per_request, s.request_deadline_s,
                                           s.max_deadline_ms)
    return list(codes), refresh, deadline


@lru_cache(maxsize=4096)
def _read_query(kind: str, raw: tuple[str | None, ...], max_symbols: int, default_deadline_s: float,
                max_deadline_ms: int) -> tuple[tuple[str, ...], bool, float]:
    """A read's query validated by its model, memoised by its raw parameters and the settings it depends on (a
    cache hit's request then costs a lookup, not a validation). A refusal raises and is not kept."""
    model = read_query_model(kind)
    limits = Settings(max_symbols_per_request=max_symbols, request_deadline_s=default_deadline_s,
                      max_deadline_ms=max_deadline_ms)
    q = models.parse(model, {name: v for name, v in zip(_read_params(kind), raw, strict=True) if v is not None})
    codes, refresh, deadline_s = q.checked(limits)
    return tuple(codes), refresh, deadline_s


# The figures every read counts, their keys made once: (kind, status or "") -> key.
_READ_FIGURES: dict[tuple[str, str], LabelKey] = {}


def _figure(kind: str, status: str) -> LabelKey:
    key = _READ_FIGURES.get((kind, status))
    if key is None:
        key = _READ_FIGURES[(kind, status)] = (metrics_key("symbol_results_total", kind=kind, status=status) if status
                                               else metrics_key("request_seconds", kind=kind))
    return key


Outcomes = tuple[tuple[LabelKey, int], ...]  # a read's symbols by status, by the figure's key


def read_outcomes(kind: str, results: Mapping[str, Any]) -> Outcomes:
    """How many symbols of a read's answer had each status, by the metric's key."""
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    return tuple((_figure(kind, status), n) for status, n in counts.items())


def count_read(gw: Gateway, kind: str, outcomes: Outcomes, started: float) -> None:
    """A read's figures: its time since `started` (perf_counter) and its symbols by status (`read_outcomes`)."""
    gw.metrics.observe_at(_figure(kind, ""), time.perf_counter() - started, outcomes)


def read_checked(gw: Gateway, kind: str, results: Mapping[str, Any], started: float) -> Outcomes:
    """A read's figures counted (`count_read`; its outcomes returned), and its one refusal: no token yet and
    nothing cached to serve."""
    outcomes = read_outcomes(kind, results)
    count_read(gw, kind, outcomes, started)
    if results and all(r.status == "error" and str(r.reason or "").startswith(TOKEN_REASON) for r in results.values()):
        # Nothing cached to serve and no token yet: the refresh function was asked; say so as one status.
        raise ApiError(503, "no KIS token yet (a refresh was requested); nothing cached to serve",
                       code="token_unavailable", headers={"Retry-After": "30"})
    return outcomes


def read_reply(gw: Gateway, kind: str, results: dict[str, Any], started: float) -> Reply:
    """The answer of a read route from the service's results (shared by the sync and async paths)."""
    read_checked(gw, kind, results, started)
    return read_answer.answer(READS[kind], results, master_rows(gw.symbols, kind), now_iso()), 200


def _read(gw: Gateway, request: Request, kind: str, key: str) -> Reply:
    codes, refresh, deadline = read_args(gw, request, kind)
    started = time.perf_counter()
    results = _get(gw, request, kind, codes, deadline, refresh, key)
    return read_reply(gw, kind, results, started)


def symbol_search(gw: Gateway, request: Request) -> Reply:
    """GET /v1/symbols/search?q=삼성&limit=20: the symbol master by code prefix, Korean or English name."""
    q = models.parse(models.Search, query_args(request)).checked()
    if gw.symbols is None or not gw.symbols.loaded():
        raise ApiError(503, "the symbol master is not loaded yet; search is back after the next preload",
                       code="unavailable", headers={"Retry-After": "60"})
    return {"query": q.text, "results": gw.symbols.search(q.text, q.limit), "master": gw.symbols.status(),
            "served_at": now_iso()}, 200


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
                    data={key or READS[kind]: _results(exc.results), "served_at": now_iso()})


def quotes(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "quote", "quotes")


def daily_prices(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "daily", "daily")


def symbol_info(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "info", "symbols")


def index_quotes(gw: Gateway, request: Request) -> Reply:
    return _read(gw, request, "index", "indices")


def health(gw: Gateway, request: Request) -> Reply:
    st = status.read(gw, limiter=False, symbol_master=True)
    checks: dict[str, Any] = {"redis": st.redis}
    if st.redis_up:
        checks["queue_depth"] = st.queue_depth
    checks["breaker"] = st.breaker["state"]
    if "age_s" in st.breaker:  # shown from the fleet's last read, that old (the document was not read for this)
        checks["breaker_age_s"] = st.breaker["age_s"]
    checks["token"] = st.token
    if st.symbol_master is not None:
        checks["symbol_master"] = st.symbol_master
    return {"status": st.verdict, "checks": checks, "kis_env": gw.settings.kis_env, "time": now_iso()}, (
        200 if st.redis_up else 503)


def stats(gw: Gateway, request: Request) -> Reply:
    m = fleet.view(gw)  # every function process's figures, not only this one's
    st = status.read(gw)
    body: dict[str, Any] = {"time": now_iso(), "metrics": m.snapshot(), "breaker": st.breaker["state"],
                            "token": st.token, "settings": {
                                "kis_env": gw.settings.kis_env, "kis_limit": gw.settings.kis_limit,
                                "budget": gw.settings.budget, "batch_size": gw.settings.effective_batch_size}}
    if "age_s" in st.breaker:
        body["breaker_age_s"] = st.breaker["age_s"]
    if st.redis_up:
        body["limiter"] = st.limiter
        body["queue_depth"] = st.queue_depth
    else:
        body["redis"] = st.redis
    body["cache_hit_ratio"] = cache_hit_ratio(m)
    body["alerts"] = gw.alerts.recent()
    return body, 200


def metrics(gw: Gateway, request: Request) -> Reply:
    m = fleet.view(gw)
    return m.prometheus(status.gauges(gw, status.read(gw), m)), 200


# ---- internal targets (Cloud Tasks / Cloud Scheduler pushes) ----------------------------------------

def drain(gw: Gateway, request: Request) -> Reply:
    task = models.parse(models.Drain, json_body(request.get_data()))
    report = gw.drain.drain(task.kind)
    return {"kind": task.kind, "batches": report.batches, "fetched": report.fetched, "failed": report.failed,
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
    job = models.parse(models.Preload, json_body(request.get_data()))
    today = datetime.now(gw.calendar.tz).date()
    if not job.force and not gw.calendar.is_trading_day(today):
        return {"skipped": f"{today.isoformat()} is not a KRX trading day"}, 200
    scheduled = request.headers.get("X-CloudScheduler-ScheduleTime")
    if not job.force and scheduled:
        # The cron fires at both possible preload times; only the one before today's opening works.
        try:
            due = preload_due(parse_schedule_time(scheduled), gw.calendar, gw.settings)
        except ValueError:
            raise ApiError(400, "X-CloudScheduler-ScheduleTime is not an RFC 3339 time",
                           field="X-CloudScheduler-ScheduleTime") from None
        if not due:
            return {"skipped": "not today's preload time"}, 200
    symbols = [*gw.settings.preload_symbols, *job.symbols]
    master = refresh_from_settings(gw.symbols, gw.settings) if gw.symbols is not None else None
    queued = gw.drain.preload(dict.fromkeys(symbols))
    return {"queued": queued, "symbols": len(set(symbols)), "symbol_master": master}, 200


# ---- routes of the older Flask gateway, kept so its jobs work unchanged ---------------------------

def legacy_snapshot_args(request: Request) -> tuple[str, str, bool]:
    """(kind, code, is_index) of the older gateway's snapshot route."""
    body = models.parse(models.Snapshot, json_body(request.get_data()))
    return ("index" if body.is_index else "quote"), body.stock_code, body.is_index


def legacy_snapshot_reply(code: str, is_index: bool, result: Any) -> Reply:
    ok = result.status in ("fresh", "stale")
    return {"success": ok, "stock_code": code, "is_index": is_index, "data": result.to_json()}, 200


def legacy_snapshot(gw: Gateway, request: Request) -> Reply:
    kind, code, is_index = legacy_snapshot_args(request)
    return legacy_snapshot_reply(code, is_index, _get(gw, request, kind, [code])[code])


def legacy_daily_args(request: Request) -> tuple[str, int]:
    """(code, days) of the older gateway's daily-prices route."""
    body = models.parse(models.LegacyDaily, json_body(request.get_data()))
    return body.stock_code, body.days


def legacy_daily_reply(code: str, days: int, result: Any) -> Reply:
    data = result.to_json()
    if "bars" in data:
        data["bars"] = data["bars"][:days]
    return {"success": result.status in ("fresh", "stale"), "stock_code": code, "data": data}, 200


def legacy_daily_prices(gw: Gateway, request: Request) -> Reply:
    code, days = legacy_daily_args(request)
    return legacy_daily_reply(code, days, _get(gw, request, "daily", [code])[code])
