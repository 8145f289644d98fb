"""Each API key's own rate and concurrency, browser keys bound to their origins, managed with `kisgw keys`."""

from __future__ import annotations

import io
import threading

import pytest
from flask import Flask, request

import shared.gateway as gateway_mod
from shared.api.serve import serve
from shared.backends import api_keys_from_settings
from shared.keys_cli import run
from shared.orders.api_keys import KeyPolicyError

ORIGIN = "https://app.example.com"


@pytest.fixture
def stack(make_gateway, redis_client):
    gw = make_gateway(INBOUND_RATE_PER_KEY="5", CONCURRENT_PER_KEY="2", GATEWAY_API_KEY_PEPPER="pepper-keys-test",
                      CORS_ORIGINS=ORIGIN)
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET"])
    def view(_):
        return serve(request)

    keys = api_keys_from_settings(gw.settings, redis_client=redis_client)
    yield gw, app.test_client(), keys
    gateway_mod.set_gateway(None)


def statuses(client, key, n, path="/v1/quotes?symbols=005930&deadline_ms=0", headers=None):
    return [client.get(path, headers={"X-API-Key": key, **(headers or {})}).status_code for _ in range(n)]


def test_a_frontend_key_has_its_own_rate_while_a_script_keeps_the_default(stack):
    gw, client, keys = stack
    script, _ = keys.create("market:read", name="script")
    frontend, _ = keys.create("market:read", name="web", rate_per_s=200, origins=[ORIGIN])
    assert statuses(client, script, 12).count(429) >= 5  # default: 5/s
    assert statuses(client, frontend, 40, headers={"Origin": ORIGIN}).count(429) == 0


def test_browser_key_only_from_its_origins_and_only_for_reading(stack):
    gw, client, keys = stack
    key, record = keys.create("market:read", origins=[ORIGIN], rate_per_s=100)
    ok = client.get("/v1/quotes?symbols=005930&deadline_ms=0", headers={"X-API-Key": key, "Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers.get("Access-Control-Allow-Origin") == ORIGIN
    for origin in ("https://evil.example", None):
        bad = client.get("/v1/quotes?symbols=005930", headers={"X-API-Key": key, **({"Origin": origin} if origin
                                                                                     else {})})
        assert bad.status_code == 403 and bad.get_json()["error"]["code"] == "origin_not_allowed"
    with pytest.raises(KeyPolicyError, match="read scopes only"):
        keys.create("market:read,orders:write", origins=[ORIGIN])
    with pytest.raises(KeyPolicyError):
        keys.update(record.key_id, origins=["http://app.example.com/path"])
    admin, admin_rec = keys.create("admin")
    with pytest.raises(KeyPolicyError):
        keys.update(admin_rec.key_id, origins=[ORIGIN])


def test_requests_in_flight_per_key_are_capped_with_429(stack, monkeypatch):
    gw, client, keys = stack
    key, _ = keys.create("market:read", rate_per_s=1000, max_concurrent=2)
    entered, release = threading.Semaphore(0), threading.Event()
    real_get = gw.reader.get

    def slow_get(*a, **kw):
        entered.release()
        release.wait(10)
        return real_get(*a, **kw)

    monkeypatch.setattr(gw.reader, "get", slow_get)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(statuses(client, key, 1)[0])) for _ in range(2)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)  # two requests in flight
    third = client.get("/v1/quotes?symbols=005930&deadline_ms=0", headers={"X-API-Key": key})
    release.set()
    for t in threads:
        t.join(10)
    assert third.status_code == 429 and third.get_json()["error"]["code"] == "too_many_in_flight"
    assert third.headers["Retry-After"] == "1"
    assert results == [200, 200]
    assert statuses(client, key, 3) == [200, 200, 200]  # slots were given back


def test_keys_cli_sets_rate_concurrency_and_origins(stack, redis_client):
    gw, client, keys = stack
    out, err = io.StringIO(), io.StringIO()
    assert run(["create", "--scopes", "market:read", "--name", "web", "--rate", "300", "--concurrency", "150",
                "--origins", ORIGIN], settings=gw.settings, redis_client=redis_client, out=out, err=err) == 0
    assert "rate=300/s concurrency=150" in err.getvalue() and ORIGIN in err.getvalue()
    key = out.getvalue().strip()
    key_id = key.split("_")[1]
    out = io.StringIO()
    assert run(["set", key_id, "--rate", "400", "--origins", ""], settings=gw.settings, redis_client=redis_client,
               out=out, err=err) == 0
    record = keys.verify(key)
    assert record.rate_per_s == 400 and record.max_concurrent == 150 and record.origins == ()
    err = io.StringIO()
    assert run(["create", "--scopes", "orders:write", "--origins", ORIGIN], settings=gw.settings,
               redis_client=redis_client, out=io.StringIO(), err=err) == 2
    assert "read scopes only" in err.getvalue()
    out = io.StringIO()
    assert run(["list"], settings=gw.settings, redis_client=redis_client, out=out, err=io.StringIO()) == 0
    assert "400" in out.getvalue() and key not in out.getvalue()
