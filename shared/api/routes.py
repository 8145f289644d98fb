"""The route table: every HTTP route of the gateway, declared once.

Each `Route` names method, path, handler, the scope its caller needs, its query, body and answer models and
how the async serve path runs it. From this table come: the routing of both serve paths (`serve.serve`,
`serve_async.serve_async`) and of the local stack, the method check of a function serving one handler, the
scope `access.authorize` enforces, the routes each deployed function serves, and /openapi.json.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api import dashboard, handlers, orders
from shared.api.access import INTERNAL, METRICS
from shared.api.registry import Doc, Header, ModelRef, Registry, Reply, Route
from shared.api.validation import IDEMPOTENCY_KEY_PATTERN
from shared.config import Settings

if TYPE_CHECKING:
    from shared.api.parts import Gateway

READ = "market:read"
IN = "shared.api.models:"  # input models (validate a query or body)
OUT = "shared.api.answer_models:"  # answer models (the document and tests only)
ORDERS = "orders:write"
ADMIN = "admin"

IDEMPOTENCY = Header(orders.IDEMPOTENCY_HEADER, True, {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                     "one id per order; repeat it unchanged to get the first answer back")
LEGACY_IDEMPOTENCY = Header(orders.IDEMPOTENCY_HEADER, False, IDEMPOTENCY.schema,
                            "optional here; without it the order is not deduplicated")
ORDER_ANSWERS = {
    202: Doc("outcome unknown (KIS did not answer): never resent; check the balance", OUT + "OrderAnswer"),
    409: Doc("the key was used with another body, or its first request is still running", OUT + "Error"),
    422: Doc("KIS rejected the order (stored: repeats get the same answer)", OUT + "OrderAnswer"),
}
ORDER_ERRORS = (405, 413, 502, 503)
READ_ERRORS = (405, 503)


def openapi_json(gw: Gateway | None, request: Request | None) -> Reply:
    """GET /openapi.json (public): the description of this table, with this gateway's deadline cap."""
    return _document(gw.settings if gw is not None else None), 200


@lru_cache(maxsize=4)
def _document(settings: Settings | None) -> dict[str, Any]:
    from shared.api.openapi import build_document  # the answer models and JSON Schema: only this route needs them

    return build_document(ROUTES, settings)  # built once per settings object, then served as is


def _read(path: str, handler: Any, kind: str, query: ModelRef, answer: ModelRef, summary: str) -> Route:
    return Route("GET", path, handler, READ, summary, query=query, ok=Doc("one result per requested code", answer),
                 errors=READ_ERRORS, asgi="read", read_kind=kind)


ROUTES = Registry([
    _read("/v1/quotes", handlers.quotes, "quote", IN + "SymbolsRead", OUT + "QuotesAnswer", "current prices"),
    _read("/v1/daily-prices", handlers.daily_prices, "daily", IN + "SymbolsRead", OUT + "DailyAnswer",
          "daily price bars (last 30)"),
    _read("/v1/symbols", handlers.symbol_info, "info", IN + "SymbolsRead", OUT + "SymbolsAnswer",
          "symbol reference data"),
    _read("/v1/indices", handlers.index_quotes, "index", IN + "IndexRead", OUT + "IndicesAnswer", "index quotes"),
    Route("GET", "/v1/symbols/search", handlers.symbol_search, READ,
          "search the symbol master by code prefix, Korean or English name (no KIS call)", query=IN + "Search",
          ok=Doc("best matches first", OUT + "SearchAnswer"), errors=READ_ERRORS),
    Route("POST", "/v1/orders", orders.place_order, ORDERS, "place a cash order (sent once per Idempotency-Key)",
          body=IN + "Order", headers=(IDEMPOTENCY,), ok=Doc("accepted", OUT + "OrderAnswer"), answers=ORDER_ANSWERS,
          errors=ORDER_ERRORS),
    Route("GET", "/v1/account/balance", orders.account_balance, ORDERS, "holdings (all pages) and account totals",
          ok=Doc("the balance", OUT + "Balance"), errors=(405, 502, 503)),
    Route("GET", "/health", handlers.health, None, "liveness and dependencies", ok=Doc("serving", OUT + "Health"),
          answers={503: Doc("not serving", OUT + "Health")}, asgi="thread"),
    Route("GET", "/stats", handlers.stats, ADMIN, "counters, limiter and queue state", ok=Doc("statistics"),
          asgi="thread"),
    Route("GET", "/metrics", handlers.metrics, METRICS, "Prometheus text (admin key or the scraper's ID token)",
          ok=Doc("metrics", media="text/plain"), asgi="thread"),
    Route("GET", "/openapi.json", openapi_json, None, "this document", ok=Doc("OpenAPI 3 document"), asgi="thread"),
    Route("GET", "/dashboard", dashboard.dashboard, None, "the live dashboard page", ok=Doc("page", media="text/html"),
          asgi="thread"),
    Route("GET", "/dashboard/feed", dashboard.dashboard_feed, ADMIN, "what the dashboard draws", ok=Doc("figures"),
          asgi="thread"),
    Route("POST", "/internal/drain", handlers.drain, INTERNAL, "drain pending symbols (Cloud Tasks)",
          body=IN + "Drain", errors=(405,)),
    Route("POST", "/internal/refresh-token", handlers.refresh_token, INTERNAL,
          "refresh the KIS token if due (Cloud Scheduler)", answers={503: Doc("no token could be had")},
          errors=(405, 413)),
    Route("POST", "/internal/preload", handlers.preload, INTERNAL, "queue daily data before the open (Cloud Scheduler)",
          body=IN + "Preload", body_required=False, errors=(405,)),
    Route("POST", "/api/market-data/snapshot", handlers.legacy_snapshot, READ, "older gateway: one quote or index",
          body=IN + "Snapshot", ok=Doc("success", OUT + "LegacyResult"), errors=(405,), asgi="read"),
    Route("POST", "/api/market-data/daily-prices", handlers.legacy_daily_prices, READ, "older gateway: daily bars",
          body=IN + "LegacyDaily", ok=Doc("success", OUT + "LegacyResult"), errors=(405,), asgi="read"),
    Route("POST", "/api/trading/buy", orders.legacy_buy, ORDERS, "older gateway: buy", body=IN + "LegacyOrder",
          headers=(LEGACY_IDEMPOTENCY,), ok=Doc("accepted", OUT + "OrderAnswer"), answers=ORDER_ANSWERS,
          errors=ORDER_ERRORS),
    Route("POST", "/api/trading/sell", orders.legacy_sell, ORDERS, "older gateway: sell", body=IN + "LegacyOrder",
          headers=(LEGACY_IDEMPOTENCY,), ok=Doc("accepted", OUT + "OrderAnswer"), answers=ORDER_ANSWERS,
          errors=ORDER_ERRORS),
    Route("POST", "/api/account/balance", orders.legacy_balance, ORDERS, "older gateway: balance",
          body=IN + "Empty", body_required=False, ok=Doc("success", OUT + "LegacyBalance"), errors=ORDER_ERRORS),
])
