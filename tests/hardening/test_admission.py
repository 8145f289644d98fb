"""Admission of pending work: per-caller rate of new symbols, a cap per kind, expiry of unwanted symbols,
waited-for symbols claimed first, unknown codes never pending."""

from __future__ import annotations

import time

import pytest
from flask import Flask, request

import shared.gateway as gateway_mod
from shared.api.serve import serve
from shared.config import load_settings
from shared.market import admission
from shared.market.pending import ADDED, ALREADY, FULL, OVER_RATE, PendingSymbols


def codes(start: int, n: int) -> list[str]:
    return [f"{i:06d}" for i in range(start, start + n)]


def test_caller_rate_and_kind_cap_in_one_atomic_step(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "daily", prefix=redis_prefix, lease_s=5)
    got = pend.admit(codes(0, 30), caller="key:a", wait_s=1, max_pending=100, new_per_s=20)
    assert sum(1 for v in got.status.values() if v == ADDED) == 20
    assert sum(1 for v in got.status.values() if v == OVER_RATE) == 10
    # Symbols already pending cost nothing against the rate; another caller has its own rate.
    again = pend.admit(codes(0, 5), caller="key:a", wait_s=1, max_pending=100, new_per_s=20)
    assert set(again.status.values()) == {ALREADY}
    other = pend.admit(codes(100, 90), caller="key:b", wait_s=1, max_pending=100, new_per_s=1000)
    assert sum(1 for v in other.status.values() if v == ADDED) == 80  # 20 + 80 = the cap of 100
    assert sum(1 for v in other.status.values() if v == FULL) == 10
    assert pend.size() == 100


def test_unwanted_symbols_expire_but_preloads_and_waited_ones_stay(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "daily", prefix=redis_prefix, lease_s=5, idle_s=0.3)
    pend.admit(codes(0, 10), caller="key:a", wait_s=0, max_pending=0, new_per_s=0)  # deadline_ms=0, gone
    pend.add(codes(500, 3))  # preload: nobody waits, must still be fetched
    pend.admit(codes(900, 2), caller="key:b", wait_s=30, max_pending=0, new_per_s=0)  # a reader still waits
    time.sleep(0.5)
    claimed = pend.claim(50, "drain-1")
    assert set(claimed) == set(codes(500, 3)) | set(codes(900, 2))
    assert claimed[:2] == codes(900, 2)  # the waited-for symbols first
    assert pend.expired == 10 and pend.size() == 5


def test_claims_serve_waited_for_symbols_before_a_backlog(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "daily", prefix=redis_prefix, lease_s=5, idle_s=60)
    pend.admit(codes(0, 200), caller="key:flood", wait_s=0, max_pending=0, new_per_s=0)
    pend.admit(["005930"], caller="key:reader", wait_s=5, max_pending=0, new_per_s=0)
    assert pend.claim(1, "d") == ["005930"]
    assert pend.claim(2, "d") == codes(0, 2)  # then oldest first


def test_unknown_codes_never_become_pending(redis_client, redis_prefix):
    settings = load_settings({}, redis_prefix=redis_prefix)
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=5)
    got = admission.admit(settings, pend, "quote", ["005930", "999999"], caller="key:a", wait_s=1,
                          drain_rate=10, is_known=lambda kind, code: code != "999999")
    assert got.unknown == ["999999"] and got.accepted == ["005930"] and pend.size() == 1


@pytest.fixture
def client(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="dev-key-adm", INBOUND_RATE_PER_KEY="1000",
                      GATEWAY_PENDING_NEW_PER_CALLER_S="20", GATEWAY_PENDING_MAX="60", TASK_QUEUE="inline://")
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET"])
    def view(_):
        return serve(request)

    yield gw, app.test_client()
    gateway_mod.set_gateway(None)


def test_a_flood_of_new_codes_from_one_key_is_429_with_retry_after_and_data(client, redis_client, sim):
    from shared.backends import api_keys_from_settings

    gw, c = client
    listed = [s["code"] for s in sim.symbols() if len(s["code"]) == 6][:50]  # known to the symbol master
    key, _ = api_keys_from_settings(gw.settings, redis_client=redis_client).create("market:read", rate_per_s=1000)
    h = {"X-API-Key": key}
    resp = c.get("/v1/daily-prices?symbols=" + ",".join(listed) + "&deadline_ms=0", headers=h)
    assert resp.status_code == 429, resp.get_data(True)[:300]
    assert int(resp.headers["Retry-After"]) >= 1
    body = resp.get_json()
    assert body["error"]["code"] == "too_many_new_symbols"
    assert len(body["daily"]) == 50  # every symbol answered: pending, or refused with the reason
    refused = [s for s, r in body["daily"].items() if "not queued" in (r.get("reason") or "")]
    assert len(refused) == 30
    assert gw.drain.pending["daily"].size() <= 20


def test_the_sync_path_waits_for_room_as_the_async_one_does(client, monkeypatch):
    """A request with nothing cached that finds the pending set full asks again for room until its deadline."""
    import threading

    from shared.market import redis_keys

    gw, c = client
    monkeypatch.setattr(gw.drain, "send_request", lambda kind, slot: None)  # nothing is fetched: see the set
    pend = gw.drain.pending["daily"]
    blocking = codes(1000, 60)
    pend.add(blocking)  # the set is at its cap of 60

    def room_later() -> None:
        time.sleep(0.4)
        gw.redis.zrem(redis_keys.pending_set(gw.settings.redis_prefix, "daily"), *blocking[:10])

    threading.Thread(target=room_later, daemon=True).start()
    started = time.monotonic()
    resp = c.get("/v1/daily-prices?symbols=035420&deadline_ms=1500", headers={"X-API-Key": "dev-key-adm"})
    assert resp.status_code == 200, resp.get_data(True)[:300]
    assert resp.get_json()["daily"]["035420"]["status"] == "pending" and pend.size() == 51
    assert 0.35 <= time.monotonic() - started < 4


def test_a_full_pending_set_answers_what_it_can_and_is_503_only_with_nothing_to_answer(client):
    gw, c = client
    gw.drain.pending["daily"].add(codes(1000, 60))  # the set is at its cap of 60
    gw.drain.caches["daily"].put_many({"005930": {"bars": [{"date": "2026-11-30", "close": "70000"}]}})
    assert gw.symbols is None or gw.symbols.is_known("daily", "000660")
    h = {"X-API-Key": "dev-key-adm"}
    resp = c.get("/v1/daily-prices?symbols=005930,000660&deadline_ms=0&refresh=true", headers=h)
    assert resp.status_code == 200, resp.get_data(True)[:300]
    body = resp.get_json()
    assert body["daily"]["005930"]["status"] == "stale" and body["daily"]["005930"]["bars"]
    reason = body["daily"]["000660"]["reason"]
    assert body["daily"]["000660"]["status"] == "error" and "not queued" in reason and "retry in" in reason
    resp = c.get("/v1/daily-prices?symbols=000660&deadline_ms=0&refresh=true", headers=h)
    assert resp.status_code == 503, resp.get_data(True)[:300]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    body = resp.get_json()
    assert body["error"]["code"] == "pending_full" and body["daily"]["000660"]["status"] == "error"
