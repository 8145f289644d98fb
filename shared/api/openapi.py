"""The OpenAPI 3 description of the whole HTTP API, served at GET /openapi.json.

Kept as code next to the handlers so parameter patterns and limits come from the same constants the
validators use. Precise enough for property-based testing: every parameter has its pattern or range,
every body its closed schema, every answer (2xx and errors) its schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api.orders import IDEMPOTENCY_HEADER, MAX_PRICE, MAX_QUANTITY
from shared.api.validation import INDEX_CODES
from shared.config import Settings

if TYPE_CHECKING:
    from shared.api.parts import Gateway

Schema = dict[str, Any]
SYMBOL = "^[0-9A-Z]{6}$"
SYMBOLS = "^[0-9A-Z]{6}(,[0-9A-Z]{6})*$"
INDEX = "(" + "|".join(INDEX_CODES) + ")"
INDEX_LIST = f"^{INDEX}(,{INDEX})*$"
JSON = "application/json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), closed: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    text = {400: "invalid input: the error names the field", 401: "no or unknown credentials",
            403: "the credential lacks the scope", 404: "no such route", 405: "method not allowed",
            409: "idempotency conflict", 413: "body too large",
            429: "too many requests, requests in flight or new symbols for this key (see Retry-After; reads "
                 "include the cached data that exists)",
            500: "internal error", 502: "KIS refused or failed",
            503: "KIS or a dependency unavailable, or too much pending work (see Retry-After; reads include the "
                 "cached data that exists)"}
    out = {str(s): _json(_ref("Error"), text[s]) for s in statuses}
    out["default"] = _json(_ref("Error"), "any other error")
    return out


COMMON_ERRORS = (400, 401, 403, 429, 500)
# OpenAPI 3.0 allows scopes only for OAuth schemes: the key scope an operation needs is in x-required-scope.
Security = list[dict[str, list[str]]]
MARKET: Security = [{"ApiKey": []}, {"GoogleIdToken": []}]
ORDERS: Security = [{"ApiKey": []}]
ADMIN: Security = [{"ApiKey": []}]
INTERNAL: Security = [{"GoogleIdToken": []}, {"ApiKey": []}]
METRICS: Security = [{"ApiKey": []}, {"GoogleIdToken": []}]  # an admin key or the scraper's identity
SCOPE_OF = {id(MARKET): "market:read", id(ORDERS): "orders:write", id(ADMIN): "admin", id(INTERNAL): "internal",
            id(METRICS): "metrics"}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"},
                                  "field": {"type": "string"}, "request_id": {"type": "string"}},
                                 ("code", "message"))}, ("error",)),
    "SymbolResult": {**_obj({"status": {"type": "string", "enum": ["fresh", "stale", "pending", "error"]},
                             "age_s": {"type": "number"}, "reason": {"type": "string"}}, ("status",)),
                     "additionalProperties": True,
                     "description": "status plus the data fields (fresh/stale); reason for stale/pending/error"},
    "MasterSymbol": _obj({"code": {"type": "string"}, "name": {"type": "string"}, "name_en": {"type": "string"},
                          "market": {"type": "string", "enum": ["KOSPI", "KOSDAQ", "KONEX"]},
                          "std_code": {"type": "string"}, "etf": {"type": "boolean"}, "etn": {"type": "boolean"},
                          "halted": {"type": "boolean"}, "administrative": {"type": "boolean"}},
                         ("code", "name", "market")),
    "Order": _obj({"side": {"type": "string", "enum": ["buy", "sell"]},
                   "symbol": {"type": "string", "pattern": SYMBOL},
                   "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                   "order_type": {"type": "string", "enum": ["limit", "market"]},
                   "price": {"type": "integer", "minimum": 0, "maximum": MAX_PRICE, "nullable": True,
                             "description": "whole won; required for limit, absent/0 for market"}},
                  ("side", "symbol", "quantity", "order_type"), closed=True),
    "OrderAnswer": _obj({
        "outcome": {"type": "string", "enum": ["accepted", "rejected", "unknown"]},
        "idempotency_key": {"type": "string", "nullable": True},
        "order": {"type": "object", "additionalProperties": True,
                  "description": "the order as sent; on acceptance also order_no, org_no, time"},
        "reason": {"type": "string"}, "kis_code": {"type": "string", "nullable": True},
        "message": {"type": "string"}, "check": {"type": "string"},
        "success": {"type": "boolean", "description": "older trading routes only"}},
        ("outcome", "order")),
    "Balance": _obj({"positions": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                     "count": {"type": "integer", "minimum": 0},
                     "totals": {"type": "object", "additionalProperties": True},
                     "as_of": {"type": "string"}}, ("positions", "count", "totals")),
}


def _market_read(key: str, summary: str, parameters: list[Schema]) -> Schema:
    params = [*parameters,
              {"name": "refresh", "in": "query", "required": False, "schema": {"type": "boolean"},
               "description": "skip the cache (the answer waits for KIS)"},
              {"name": "deadline_ms", "in": "query", "required": False,
               "schema": {"type": "integer", "minimum": 0, "maximum": Settings().max_deadline_ms},
               "description": "longest wait (capped by GATEWAY_MAX_DEADLINE_MS)"}]
    body = _obj({key: {"type": "object", "additionalProperties": _ref("SymbolResult")},
                 "served_at": {"type": "string"}}, (key, "served_at"))
    return {"get": {"summary": summary, "security": MARKET, "parameters": params,
                    "responses": {"200": _json(body, "one result per requested code"),
                                  **_errors(*COMMON_ERRORS, 405, 503)}}}


def _symbols_param(required: bool = True) -> Schema:
    return {"name": "symbols", "in": "query", "required": required,
            "schema": {"type": "string", "pattern": SYMBOLS},
            "description": "comma-separated symbol codes (6 characters 0-9/A-Z)"}


def _post(summary: str, security: list[Schema], body: Schema | None, ok: Schema, *, ok_status: str = "200",
          extra: dict[str, Schema] | None = None, params: list[Schema] | None = None,
          errors: tuple[int, ...] = (*COMMON_ERRORS, 405, 413), body_required: bool = True) -> Schema:
    op: Schema = {"summary": summary, "security": security,
                  "responses": {ok_status: _json(ok, "success"), **(extra or {}), **_errors(*errors)}}
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return {"post": op}


SNAPSHOT_CODE = "^([0-9A-Z]{6}|0001|1001|2001)$"  # a symbol, or an index code with is_index
ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
LEGACY_RESULT = _obj({"success": {"type": "boolean"}, "stock_code": {"type": "string"},
                      "data": _ref("SymbolResult")}, ("success", "stock_code", "data"))
LEGACY_ORDER = _obj({"stock_code": {"type": "string", "pattern": SYMBOL},
                     "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                     "price": {"type": "integer", "minimum": 0, "maximum": MAX_PRICE, "nullable": True},
                     "order_type": {"type": "string", "enum": ["limit", "market", "00", "01"]}},
                    ("stock_code", "quantity"), closed=True)
IDEMPOTENCY_PARAM = {"name": IDEMPOTENCY_HEADER, "in": "header", "required": True,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{8,100}$"},
                     "description": "one id per order; repeat it unchanged to get the first answer back"}
ORDER_OUTCOMES = {
    "202": _json(_ref("OrderAnswer"), "outcome unknown (KIS did not answer): never resent; check the balance"),
    "409": _json(_ref("Error"), "the key was used with another body, or its first request is still running"),
    "422": _json(_ref("OrderAnswer"), "KIS rejected the order (stored: repeats get the same answer)"),
}


def _paths() -> dict[str, Schema]:
    order_errors = (*COMMON_ERRORS, 405, 413, 502, 503)
    legacy_param = {**IDEMPOTENCY_PARAM, "required": False,
                    "description": "optional here; without it the order is not deduplicated"}
    return {
        "/v1/quotes": _market_read("quotes", "current prices", [_symbols_param()]),
        "/v1/daily-prices": _market_read("daily", "daily price bars (last 30)", [_symbols_param()]),
        "/v1/symbols": _market_read("symbols", "symbol reference data", [_symbols_param()]),
        "/v1/symbols/search": {"get": {
            "summary": "search the symbol master by code prefix, Korean or English name (no KIS call)",
            "security": MARKET, "parameters": [
                {"name": "q", "in": "query", "required": True,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 40},
                 "description": "code prefix, standard code, or part of a Korean or English name"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}}],
            "responses": {"200": _json(_obj({"query": {"type": "string"},
                                             "results": {"type": "array", "items": _ref("MasterSymbol")},
                                             "master": ANY_OBJECT, "served_at": {"type": "string"}},
                                            ("query", "results", "served_at")), "best matches first"),
                          **_errors(*COMMON_ERRORS, 405, 503)}}},
        "/v1/indices": _market_read("indices", "index quotes", [
            {"name": "codes", "in": "query", "required": False, "schema": {"type": "string", "pattern": INDEX_LIST},
             "description": f"index codes ({', '.join(INDEX_CODES)}); all when absent"}]),
        "/v1/orders": _post("place a cash order (sent once per Idempotency-Key)", ORDERS, _ref("Order"),
                            _ref("OrderAnswer"), extra=ORDER_OUTCOMES, params=[IDEMPOTENCY_PARAM],
                            errors=order_errors),
        "/v1/account/balance": {"get": {"summary": "holdings (all pages) and account totals", "security": ORDERS,
                                        "responses": {"200": _json(_ref("Balance"), "the balance"),
                                                      **_errors(*COMMON_ERRORS, 405, 502, 503)}}},
        "/health": {"get": {"summary": "liveness and dependencies", "security": [],
                            "responses": {"200": _json(ANY_OBJECT, "serving"),
                                          "503": _json(ANY_OBJECT, "not serving"), **_errors(405)}}},
        "/openapi.json": {"get": {"summary": "this document", "security": [],
                                  "responses": {"200": _json(ANY_OBJECT, "OpenAPI 3 document")}}},
        "/dashboard": {"get": {"summary": "the live dashboard page", "security": [],
                               "responses": {"200": {"description": "page",
                                                     "content": {"text/html": {"schema": {"type": "string"}}}},
                                             **_errors(405)}}},
        "/dashboard/feed": {"get": {"summary": "what the dashboard draws", "security": ADMIN,
                                    "responses": {"200": _json(ANY_OBJECT, "figures"), **_errors(*COMMON_ERRORS)}}},
        "/stats": {"get": {"summary": "counters, limiter and queue state", "security": ADMIN,
                           "responses": {"200": _json(ANY_OBJECT, "statistics"), **_errors(*COMMON_ERRORS)}}},
        "/metrics": {"get": {"summary": "Prometheus text (admin key or the scraper's ID token)", "security": METRICS,
                             "responses": {"200": {"description": "metrics",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           **_errors(*COMMON_ERRORS)}}},
        "/internal/drain": _post("drain pending symbols (Cloud Tasks)", INTERNAL,
                                 _obj({"kind": {"type": "string", "enum": ["quote", "index", "daily", "info"]},
                                       "call_class": {"type": "string", "enum": ["orders", "quotes", "reference"]},
                                       "slot": {"type": "integer"}},
                                      ("kind",), closed=True), ANY_OBJECT),
        "/internal/refresh-token": _post("refresh the KIS token if due (Cloud Scheduler)", INTERNAL, None,
                                         ANY_OBJECT, extra={"503": _json(ANY_OBJECT, "no token could be had")}),
        "/internal/preload": _post("queue daily data before the open (Cloud Scheduler)", INTERNAL,
                                   _obj({"symbols": {"type": "array", "items": {"type": "string", "pattern": SYMBOL}},
                                         "force": {"type": "boolean"}}, closed=True), ANY_OBJECT,
                                   body_required=False),
        "/api/market-data/snapshot": _post("older gateway: one quote or index", MARKET,
                                           _obj({"stock_code": {"type": "string", "pattern": SNAPSHOT_CODE},
                                                 "is_index": {"type": "boolean"}}, ("stock_code",), closed=True),
                                           LEGACY_RESULT),
        "/api/market-data/daily-prices": _post("older gateway: daily bars", MARKET,
                                               _obj({"stock_code": {"type": "string", "pattern": SYMBOL},
                                                     "days": {"type": "integer", "minimum": 1, "maximum": 30}},
                                                    ("stock_code",), closed=True), LEGACY_RESULT),
        "/api/trading/buy": _post("older gateway: buy", ORDERS, LEGACY_ORDER, _ref("OrderAnswer"),
                                  extra=ORDER_OUTCOMES, params=[legacy_param], errors=order_errors),
        "/api/trading/sell": _post("older gateway: sell", ORDERS, LEGACY_ORDER, _ref("OrderAnswer"),
                                   extra=ORDER_OUTCOMES, params=[legacy_param], errors=order_errors),
        "/api/account/balance": _post("older gateway: balance", ORDERS,
                                      {"type": "object", "additionalProperties": False, "maxProperties": 0},
                                      _obj({"success": {"type": "boolean"}, "data": _ref("Balance")},
                                           ("success", "data")), errors=(*COMMON_ERRORS, 405, 413, 502, 503),
                                      body_required=False),
    }


def _with_scopes(paths: dict[str, Schema]) -> dict[str, Schema]:
    for item in paths.values():
        for op in item.values():
            scope = SCOPE_OF.get(id(op.get("security")))
            if scope:
                op["x-required-scope"] = scope
    return paths


def build_document(server_url: str | None = None) -> Schema:
    doc: Schema = {
        "openapi": "3.0.3",
        "info": {"title": "KIS gateway", "version": "1",
                 "description": "Market data, orders and balance in front of the KIS OpenAPI. Send X-API-Key "
                                "(scopes market:read, orders:write, admin); Google Cloud callers may send a "
                                "Google-signed ID token as Authorization: Bearer."},
        "paths": _with_scopes(_paths()),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "GoogleIdToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def openapi_json(gw: Gateway, request: Request) -> tuple[Schema, int]:
    """GET /openapi.json (public)."""
    return build_document(), 200
