"""The route table is the one declaration: routing, method checks, scopes, each function's routes, the request
models' validation and the answer models all come from it, and real answers match the documented models."""

from __future__ import annotations

import pytest
from flask import Flask, request
from werkzeug.test import EnvironBuilder

from shared.api import handlers, models, orders
from shared.api.errors import ApiError
from shared.api.registry import Registry, Route
from shared.api.routes import ROUTES
from shared.api.serve import serve
from shared.config import load_settings
from shared.deployment import functions
from shared.gateway import set_gateway

DEV = {"X-API-Key": "routes-dev-key"}


def _request(method, path, **kw):
    return EnvironBuilder(method=method, path=path, **kw).get_request()


def test_every_route_is_found_by_method_and_path_and_other_methods_get_405():
    for r in ROUTES:
        assert ROUTES.find(_request(r.method, r.path)) is r.handler
        assert ROUTES.find(_request(r.method, r.path + "/")) is r.handler  # a trailing slash is the same path
        other = "POST" if r.method == "GET" else "GET"
        if (other, r.path) not in ROUTES.table:
            with pytest.raises(ApiError) as err:
                ROUTES.find(_request(other, r.path))
            assert err.value.status == 405 and err.value.headers["Allow"] == r.method
    with pytest.raises(ApiError) as err:
        ROUTES.find(_request("GET", "/v1/nothing"))
    assert err.value.status == 404


def test_a_function_serves_only_the_routes_of_its_paths():
    legacy = ROUTES.for_function("legacy_api")
    assert ("POST", "/api/trading/buy") in legacy and ("POST", "/internal/drain") not in legacy
    with pytest.raises(ApiError) as err:
        ROUTES.find(_request("POST", "/internal/drain"), "legacy_api")
    assert err.value.status == 404
    for name, fn in functions().items():
        for (_, path) in ROUTES.for_function(name):
            assert fn.serves(path)


def test_method_check_of_a_one_handler_function():
    ROUTES.check_method(_request("GET", "/"), handlers.quotes)
    with pytest.raises(ApiError) as err:
        ROUTES.check_method(_request("POST", "/"), handlers.quotes)
    assert err.value.status == 405 and err.value.headers == {"Allow": "GET"}


def test_scopes_come_from_the_table_and_unknown_handlers_fail_closed():
    assert ROUTES.scope_of(handlers.health) is None
    assert ROUTES.scope_of(handlers.drain) == "internal"
    assert ROUTES.scope_of(orders.legacy_balance) == "orders:write"
    assert ROUTES.scope_of(lambda gw, req: ({}, 200)) == "admin"


def test_the_async_path_sets_come_from_the_table():
    assert ROUTES.read_kinds == {handlers.quotes: "quote", handlers.daily_prices: "daily",
                                 handlers.symbol_info: "info", handlers.index_quotes: "index"}
    assert handlers.legacy_snapshot in ROUTES.reads and orders.place_order not in ROUTES.asgi
    assert handlers.health in ROUTES.asgi and handlers.health not in ROUTES.reads


def test_a_route_or_handler_declared_twice_is_refused():
    a = Route("GET", "/x", handlers.health, None, "x")
    with pytest.raises(ValueError, match="declared twice"):
        Registry([a, Route("GET", "/x", handlers.stats, None, "x")])
    with pytest.raises(ValueError, match="two routes"):
        Registry([a, Route("GET", "/y", handlers.health, None, "y")])


@pytest.mark.parametrize(("model", "data", "field", "needle"), [
    (models.Order, {"side": "buy", "symbol": "005930", "quantity": 1, "order_type": "limit"}, "price", "required"),
    (models.Order, {"side": "buy", "symbol": "005930", "quantity": True, "order_type": "market"}, "quantity",
     "integer"),
    (models.Order, {"side": "buy", "symbol": "005930", "quantity": 1, "order_type": "market", "note": 1}, "note",
     "unknown field 'note'"),
    (models.Drain, {"kind": "weekly"}, "kind", "kind"),
    (models.Drain, {}, "kind", "kind is required"),
    (models.Preload, {"symbols": ["005930", "12"]}, "symbols", "not a symbol code"),
    (models.LegacyDaily, {"stock_code": "005930", "days": 31}, "days", "days"),
    (models.Snapshot, {"stock_code": "9999", "is_index": True}, "stock_code", "index codes"),
])
def test_models_refuse_bad_input_with_a_400_naming_the_field(model, data, field, needle):
    with pytest.raises(ApiError) as err:
        models.parse(model, data)
    assert err.value.status == 400 and err.value.field == field and needle in err.value.message


def test_a_refusal_quotes_at_most_20_characters_of_what_was_sent():
    with pytest.raises(ApiError) as err:
        models.parse(models.Order, {"side": "x" * 5000, "symbol": "005930", "quantity": 1, "order_type": "market"})
    assert err.value.field == "side" and "one of buy, sell" in err.value.message
    assert "x" * 20 in err.value.message and "x" * 21 not in err.value.message


def test_models_normalise_as_the_gateway_always_did():
    assert models.parse(models.Preload, {"symbols": [" 0001a0"]}).symbols == ["0001A0"]
    snap = models.parse(models.Snapshot, {"stock_code": " 005930 "})
    assert snap.stock_code == "005930" and snap.is_index is False
    order = models.parse(models.LegacyOrder, {"stock_code": "005930", "quantity": 3, "order_type": "01"})
    assert order.kind == "market" and order.price is None
    limits = load_settings({}, max_symbols_per_request=2)
    with pytest.raises(ApiError, match="at most 2"):
        models.parse(models.SymbolsRead, {"symbols": "005930,000660,035420"}).checked(limits)


@pytest.fixture
def app(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=DEV["X-API-Key"], GATEWAY_MAX_DEADLINE_MS="3000")
    set_gateway(gw)
    flask_app = Flask(__name__)

    @flask_app.route("/<path:path>", methods=["GET", "POST"])
    def any_route(path):
        return serve(request)

    yield flask_app.test_client()
    set_gateway(None)


def test_real_answers_match_their_documented_models(app):
    quotes = app.get("/v1/quotes?symbols=005930,000660", headers=DEV)
    assert quotes.status_code == 200
    models.QuotesAnswer.model_validate(quotes.get_json())
    indices = app.get("/v1/indices", headers=DEV)
    assert set(models.IndicesAnswer.model_validate(indices.get_json()).indices) == {"0001", "1001", "2001"}
    search = app.get("/v1/symbols/search?q=005930", headers=DEV)
    assert models.SearchAnswer.model_validate(search.get_json()).results[0].code == "005930"
    health = app.get("/health")
    models.Health.model_validate(health.get_json())
    snap = app.post("/api/market-data/snapshot", json={"stock_code": "005930"}, headers=DEV)
    assert models.LegacyResult.model_validate(snap.get_json()).success is True
    bad = app.get("/v1/quotes", headers=DEV)
    assert bad.status_code == 400
    assert models.Error.model_validate(bad.get_json()).error.field == "symbols"


def test_served_document_shows_this_gateways_deadline_cap(app):
    doc = app.get("/openapi.json").get_json()
    params = doc["paths"]["/v1/quotes"]["get"]["parameters"]
    assert next(p for p in params if p["name"] == "deadline_ms")["schema"]["maximum"] == 3000
    assert app.get("/v1/quotes?symbols=005930&deadline_ms=3001", headers=DEV).status_code == 400
