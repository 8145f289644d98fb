"""The OpenAPI document: valid, loadable by schemathesis, covering every route with its scope."""

from __future__ import annotations

import json

import pytest

from shared.api import openapi, orders
from shared.api.routes import ROUTES, openapi_json

ORDER_ROUTES = {("POST", "/v1/orders"): orders.place_order, ("GET", "/v1/account/balance"): orders.account_balance,
                ("POST", "/api/trading/buy"): orders.legacy_buy, ("POST", "/api/trading/sell"): orders.legacy_sell,
                ("POST", "/api/account/balance"): orders.legacy_balance}
required_scope = ROUTES.scope_of


def build_document(server_url=None):
    return openapi.build_document(ROUTES, server_url=server_url)


def _operations(doc):
    return {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}


def test_document_is_valid_openapi():
    import openapi_spec_validator as validator
    validator.validate(build_document("http://127.0.0.1:8080"))


def test_schemathesis_loads_every_operation():
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(build_document("http://127.0.0.1:8080"))))
    loaded = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert loaded == set(_operations(build_document()))


def test_every_route_is_described_with_the_scope_authorize_enforces():
    routes = dict(ORDER_ROUTES)
    routes.update(ROUTES.table)
    routes[("GET", "/openapi.json")] = openapi_json
    ops = _operations(build_document())
    assert set(routes) <= set(ops)
    for key, handler in routes.items():
        assert ops[key].get("x-required-scope") == required_scope(handler), key


def test_order_routes_and_scopes_are_described():
    ops = _operations(build_document())
    for key, handler in ORDER_ROUTES.items():
        assert ops[key]["x-required-scope"] == required_scope(handler) == "orders:write"
    place = ops[("POST", "/v1/orders")]
    header = next(p for p in place["parameters"] if p["name"] == "Idempotency-Key")
    assert header["required"] is True and header["in"] == "header"
    assert {"200", "202", "400", "401", "403", "409", "422", "429", "503"} <= set(place["responses"])
    assert ops[("GET", "/health")]["security"] == [] and "x-required-scope" not in ops[("GET", "/health")]


def test_symbol_parameters_have_patterns():
    ops = _operations(build_document())
    symbols = next(p for p in ops[("GET", "/v1/quotes")]["parameters"] if p["name"] == "symbols")
    assert symbols["schema"]["pattern"] == "^[0-9A-Z]{6}(,[0-9A-Z]{6})*$"
    order = build_document()["components"]["schemas"]["Order"]
    assert order["additionalProperties"] is False and order["properties"]["quantity"]["maximum"] == 1_000_000


def test_handler_serves_the_document():
    body, status = openapi_json(None, None)
    assert status == 200 and body["openapi"].startswith("3.") and "/v1/orders" in body["paths"]
