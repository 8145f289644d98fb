"""Entry points of functions/main.py through functions-framework's own app, no server."""

from pathlib import Path

import pytest
from functions_framework import create_app

from shared.config import load_settings
from shared.gateway import build_gateway, set_gateway

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")


@pytest.fixture
def gateway(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    yield gw
    set_gateway(None)


def client(target):
    return create_app(target, MAIN).test_client()


def test_quotes_entry_point(gateway):
    r = client("quotes").get("/?symbols=005930", headers={"X-API-Key": "test-dev-key"})
    assert r.status_code == 200 and r.get_json()["quotes"]["005930"]["status"] == "fresh"
    assert r.headers["X-Request-Id"]


def test_request_id_is_carried(gateway):
    r = client("health").get("/", headers={"X-Request-Id": "abc123"})
    assert r.headers["X-Request-Id"] == "abc123"


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
    def boom(*a, **kw):
        raise RuntimeError("secret-detail-xyz")

    monkeypatch.setattr(gateway.service, "get", boom)
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
