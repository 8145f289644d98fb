"""Entry points of functions/main.py through functions-framework's own app, no server.

The read entry points are ASGI (`@aio.http`): functions-framework's `create_app` gives a Starlette app for them,
driven here through Starlette's TestClient; the synchronous ones give a Flask app and its test client.
"""

from pathlib import Path

import pytest
from flask import Flask
from functions_framework import create_app
from starlette.testclient import TestClient

from shared.config import load_settings
from shared.gateway import build_gateway, set_gateway

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")


@pytest.fixture
def gateway(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    yield gw
    set_gateway(None)


_opened: list[TestClient] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _opened:
        _opened.pop().__exit__(None, None, None)


class _Answer:
    """An httpx response read the way the Flask test client's responses are read below."""

    def __init__(self, r):
        self._r, self.status_code, self.headers = r, r.status_code, r.headers

    def get_json(self):
        return self._r.json()

    def get_data(self, as_text=False):
        return self._r.text if as_text else self._r.content


class _AsgiClient:
    def __init__(self, app):
        self._c = TestClient(app, raise_server_exceptions=False).__enter__()
        _opened.append(self._c)

    def get(self, path, **kw):
        return _Answer(self._c.get(path, **kw))

    def post(self, path, **kw):
        return _Answer(self._c.post(path, **kw))


def client(target, asgi=False):
    """`asgi=True` is `functions-framework --asgi` (the local router is started that way)."""
    if asgi:
        from functions_framework.aio import create_asgi_app

        return _AsgiClient(create_asgi_app(target, MAIN))
    app = create_app(target, MAIN)
    return app.test_client() if isinstance(app, Flask) else _AsgiClient(app)


def test_quotes_entry_point(gateway):
    r = client("quotes").get("/?symbols=005930", headers={"X-API-Key": "test-dev-key"})
    assert r.status_code == 200 and r.get_json()["quotes"]["005930"]["status"] == "fresh"
    assert r.headers["X-Request-Id"]


def test_request_id_is_carried(gateway):
    r = client("health").get("/", headers={"X-Request-Id": "abc123"})
    assert r.headers["X-Request-Id"] == "abc123"


def test_async_path_replaces_an_unsafe_request_id(gateway):
    """The ASGI functions keep a caller's X-Request-Id only when it is safe to echo and log, as the sync ones."""
    r = client("health").get("/", headers={"X-Request-Id": "bad id;<script>"})
    assert r.headers["X-Request-Id"] != "bad id;<script>" and len(r.headers["X-Request-Id"]) == 32


def test_health_is_503_when_redis_is_down(redis_prefix, sim):
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_PREFIX": redis_prefix,
                              "KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": "PSx", "KIS_APP_SECRET": "y",
                              "TASK_QUEUE": "local://", "GATEWAY_MODE": "local"})
    gw = build_gateway(settings)
    set_gateway(gw)
    try:
        r = client("health").get("/")
        assert r.status_code == 503
        body = r.get_json()
        assert body["status"] == "down" and body["checks"]["redis"].startswith("down")
    finally:
        set_gateway(None)


def test_unknown_route_on_the_router(gateway):
    r = client("legacy_api").get("/v2/nothing", headers={"X-API-Key": "test-dev-key"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


def test_legacy_api_serves_only_the_older_gateways_routes(gateway):
    """Finding 7: /internal/* is not reachable through the public legacy_api function, whatever the key."""
    for path in ("/internal/drain", "/internal/refresh-token", "/v1/quotes", "/metrics"):
        r = client("legacy_api").post(path, json={"kind": "quote"}, headers={"X-API-Key": "test-dev-key"})
        assert r.status_code in (404, 405), path
        assert r.get_json()["error"]["code"] in ("not_found", "method_not_allowed")


def test_internal_error_hides_details(gateway, monkeypatch):
    from shared.market.reader import AsyncReader

    async def boom(*a, **kw):
        raise RuntimeError("secret-detail-xyz")

    monkeypatch.setattr(AsyncReader, "get", boom)  # the read path's service call
    r = client("quotes").get("/?symbols=005930", headers={"X-API-Key": "test-dev-key"})
    assert r.status_code == 500
    assert "secret-detail-xyz" not in r.get_data(as_text=True)
    assert r.get_json()["error"]["request_id"]


def test_preload_skips_other_firing(gateway):
    # A firing at 09:30 KST on an ordinary trading day is not that day's preload time.
    r = client("preload").post("/", json={}, headers={"X-CloudScheduler-ScheduleTime": "2026-11-24T00:30:00Z",
                                                      "X-API-Key": "test-dev-key"})
    assert r.status_code == 200 and "skipped" in r.get_json()


def test_redis_down_is_503_not_500(redis_prefix, sim):
    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_PREFIX": redis_prefix,
                              "KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": "PSx", "KIS_APP_SECRET": "y",
                              "TASK_QUEUE": "local://", "GATEWAY_MODE": "local", "GATEWAY_DEV_API_KEY": "k"})
    set_gateway(build_gateway(settings))
    try:
        r = client("quotes").get("/?symbols=005930", headers={"X-API-Key": "k"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.get_json()["error"]["code"] == "unavailable"
    finally:
        set_gateway(None)
