"""Fixtures of the hardening tests: an order-capable gateway against the simulator, served through serve()."""

from __future__ import annotations

import json

import pytest

DEV_KEY = "dev-key-hardening"
ORDER = {"side": "buy", "symbol": "005930", "quantity": 1, "order_type": "limit", "price": 70000}


def post_order(app, idem, key=DEV_KEY, body=ORDER, path="/v1/orders"):
    headers = {"X-API-Key": key}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    resp = app.test_client().post(path, data=json.dumps(body), content_type="application/json", headers=headers)
    return resp.status_code, resp.get_json(), resp.headers


@pytest.fixture
def order_stack(make_gateway, sim):
    from flask import Flask, request

    import shared.gateway as gateway_mod
    from shared.api.routes import ROUTES
    from shared.api.serve import serve

    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=DEV_KEY, INBOUND_RATE_PER_KEY="1000",
                      BREAKER_FAIL_MAX="2")
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET", "POST"])
    def view(_):
        return serve(request, ROUTES.table[(request.method, request.path)])

    yield gw, app
    gateway_mod.set_gateway(None)


