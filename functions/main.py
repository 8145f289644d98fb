"""Cloud Functions entry points. Each is one line: the logic lives in `shared/`."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.api import dashboard as dash
from shared.api import handlers as h
from shared.api import orders as o
from shared.api.openapi import openapi_json
from shared.api.serve import serve
from shared.observability import logs

logs.configure()


@functions_framework.http
def quotes(request: Request) -> Response:
    return serve(request, h.quotes)


@functions_framework.http
def daily_prices(request: Request) -> Response:
    return serve(request, h.daily_prices)


@functions_framework.http
def symbol_info(request: Request) -> Response:
    return serve(request, h.symbol_info)


@functions_framework.http
def symbol_search(request: Request) -> Response:
    return serve(request, h.symbol_search)


@functions_framework.http
def index_quotes(request: Request) -> Response:
    return serve(request, h.index_quotes)


@functions_framework.http
def orders(request: Request) -> Response:
    return serve(request, o.place_order)


@functions_framework.http
def balance(request: Request) -> Response:
    return serve(request, o.account_balance)


@functions_framework.http
def openapi(request: Request) -> Response:
    return serve(request, openapi_json)


@functions_framework.http
def health(request: Request) -> Response:
    return serve(request, h.health)


@functions_framework.http
def stats(request: Request) -> Response:
    return serve(request, h.stats)


@functions_framework.http
def metrics(request: Request) -> Response:
    return serve(request, h.metrics)


@functions_framework.http
def legacy_api(request: Request) -> Response:
    """The older Flask gateway's /api/... routes (market data, trading, balance), so its jobs switch unchanged."""
    return serve(request, function="legacy_api")


@functions_framework.http
def drain(request: Request) -> Response:
    return serve(request, h.drain)


@functions_framework.http
def refresh_token(request: Request) -> Response:
    return serve(request, h.refresh_token)


@functions_framework.http
def preload(request: Request) -> Response:
    return serve(request, h.preload)


@functions_framework.http
def dashboard(request: Request) -> Response:
    """The live page at its root, its JSON feed at /feed."""
    return serve(request, dash.dashboard_feed if request.path.rstrip("/").endswith("/feed") else dash.dashboard)

