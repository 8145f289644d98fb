"""Cloud Functions entry points. Each is one line: the logic lives in `shared/`; the gateway each serves with is
the composition root's (`shared.gateway.get_gateway`: built from settings on first use, once per process).

The read path (quotes, daily_prices, symbol_info, index_quotes, health, stats, metrics, dashboard, openapi,
legacy_api) is async on functions-framework's ASGI mode (`@aio.http`, served by uvicorn): a waiting request holds
no thread. The drain, orders and internal targets stay synchronous (WSGI): their work is blocking KIS calls
under the shared limiter, one task at a time per call, where threads are the simpler tool.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response
from functions_framework import aio
from starlette.requests import Request as AsyncRequest
from starlette.responses import Response as AsyncResponse

from shared import garbage
from shared.api import dashboard as dash
from shared.api import handlers as h
from shared.api import orders as o
from shared.api.registry import Handler
from shared.api.routes import openapi_json
from shared.api.serve import serve
from shared.api.serve_async import serve_async
from shared.gateway import get_gateway
from shared.observability import logs

logs.configure()
garbage.collect_rarely()  # before the first request's imports (the input models) and the gateway's preparation


@aio.http
async def quotes(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.quotes, gateway=get_gateway)


@aio.http
async def daily_prices(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.daily_prices, gateway=get_gateway)


@aio.http
async def symbol_info(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.symbol_info, gateway=get_gateway)


@functions_framework.http
def symbol_search(request: Request) -> Response:
    return serve(request, h.symbol_search, gateway=get_gateway)


@aio.http
async def index_quotes(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.index_quotes, gateway=get_gateway)


@functions_framework.http
def orders(request: Request) -> Response:
    return serve(request, o.place_order, gateway=get_gateway)


@functions_framework.http
def balance(request: Request) -> Response:
    return serve(request, o.account_balance, gateway=get_gateway)


@aio.http
async def openapi(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, openapi_json, gateway=get_gateway)


@aio.http
async def health(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.health, gateway=get_gateway)


@aio.http
async def stats(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.stats, gateway=get_gateway)


@aio.http
async def metrics(request: AsyncRequest) -> AsyncResponse:
    return await serve_async(request, h.metrics, gateway=get_gateway)


@aio.http
async def legacy_api(request: AsyncRequest) -> AsyncResponse:
    """The older Flask gateway's /api/... routes (market data, trading, balance), so its jobs switch unchanged;
    its trading and balance routes run on the synchronous path in worker threads."""
    return await serve_async(request, function="legacy_api", gateway=get_gateway)


@functions_framework.http
def drain(request: Request) -> Response:
    return serve(request, h.drain, gateway=get_gateway)


@functions_framework.http
def refresh_token(request: Request) -> Response:
    return serve(request, h.refresh_token, gateway=get_gateway)


@functions_framework.http
def preload(request: Request) -> Response:
    return serve(request, h.preload, gateway=get_gateway)


def _dashboard_part(request: Request) -> Handler:
    return dash.dashboard_feed if request.path.rstrip("/").endswith("/feed") else dash.dashboard


@aio.http
async def dashboard(request: AsyncRequest) -> AsyncResponse:
    """The live page at its root, its JSON feed at /feed."""
    return await serve_async(request, pick=_dashboard_part, gateway=get_gateway)

