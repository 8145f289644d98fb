"""The dashboard served by a tiny Flask app of our own, in front of a real in-process gateway on the simulator.

The app maps the routes the way the lead wires them into the route table: GET /dashboard (public, HTML),
GET /dashboard/feed (admin), GET /v1/quotes (market:read), all through the real serve() and access checks.
"""

from __future__ import annotations

import threading

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from shared.api import handlers
from shared.api.dashboard import dashboard, dashboard_feed
from shared.api.serve import serve
from shared.gateway import set_gateway

DEV_KEY = "dash-dev-key-0123"


def make_app() -> Flask:
    app = Flask("dashboard-test")

    @app.route("/dashboard")
    def page():
        resp = serve(request, dashboard)
        if resp.status_code == 200:
            resp.mimetype = "text/html"
        return resp

    @app.route("/dashboard/feed")
    def feed():
        return serve(request, dashboard_feed)

    @app.route("/v1/quotes")
    def quotes():
        return serve(request, handlers.quotes)

    return app


@pytest.fixture
def dash_gateway(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=DEV_KEY, INBOUND_RATE_PER_KEY="100000",
                      TASK_QUEUE="inline://", GATEWAY_COLLECT_WINDOW_MS="20")
    set_gateway(gw)
    yield gw
    set_gateway(None)


@pytest.fixture
def client(dash_gateway):
    return make_app().test_client()


@pytest.fixture
def dash_server(dash_gateway):
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
