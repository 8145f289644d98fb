"""/health, /stats, /metrics and the dashboard feed all show the one status read (shared.api.status)."""

from __future__ import annotations

import pytest
from flask import Flask, request

from shared.api import status
from shared.api.serve import serve
from shared.gateway import set_gateway

DEV = {"X-API-Key": "status-dev-key"}


@pytest.fixture
def app(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=DEV["X-API-Key"])
    set_gateway(gw)
    flask_app = Flask(__name__)

    @flask_app.route("/<path:path>", methods=["GET", "POST"])
    def any_route(path):
        return serve(request)

    yield flask_app.test_client()
    set_gateway(None)


def test_every_readout_shows_the_one_status_read(app, monkeypatch):
    reads = []
    real = status.read

    def planted(gw, **kw):
        got = real(gw, **kw)
        reads.append(kw)
        return status.Status(redis="ok", queue_depth={"quote": 7, "index": 0, "daily": 3, "info": 0},
                             limiter=got.limiter,
                             breaker={**got.breaker, "state": "open", "retry_after_s": 12.0},
                             token={"state": "valid", "age_s": 1.0, "expires_in_s": 4321.0, "last_error": None},
                             symbol_master=got.symbol_master)

    monkeypatch.setattr(status, "read", planted)
    health = app.get("/health").get_json()
    assert health["status"] == "degraded" and health["checks"]["breaker"] == "open"
    assert health["checks"]["queue_depth"]["quote"] == 7 and health["checks"]["token"]["expires_in_s"] == 4321.0
    stats = app.get("/stats", headers=DEV).get_json()
    assert stats["breaker"] == "open" and stats["queue_depth"]["daily"] == 3
    assert stats["token"]["expires_in_s"] == 4321.0
    feed = app.get("/dashboard/feed", headers=DEV).get_json()
    assert feed["breaker"]["state"] == "open" and feed["queue_depth"]["quote"] == 7
    text = app.get("/metrics", headers=DEV).get_data(as_text=True)
    assert 'kisgw_queue_depth{kind="quote"} 7' in text and "kisgw_breaker_open 1" in text
    assert "kisgw_token_expires_in_seconds 4321" in text
    assert len(reads) == 4  # one read per answer


def test_verdict_and_gauges_of_a_status_without_redis(make_gateway):
    gw = make_gateway(load_symbol_master=False)
    down = status.Status(redis="down: ConnectionError", queue_depth={}, limiter=None,
                         breaker={"state": "closed"}, token={"state": "none yet"}, symbol_master=None)
    assert down.verdict == "down" and not down.redis_up
    gauges = status.gauges(gw, down, gw.metrics)
    assert gauges["redis_up"] == 0.0 and not any(k.startswith(("queue_depth", "limiter_wait")) for k in gauges)
    assert "token_expires_in_seconds" not in gauges
    half = status.Status(redis="ok", queue_depth={}, limiter=None, breaker={"state": "half-open"}, token={},
                         symbol_master=None)
    assert half.verdict == "degraded" and status.gauges(gw, half, gw.metrics)["breaker_open"] == 2.0
