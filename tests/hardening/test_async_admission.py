"""The ASGI read functions (the deployed read path) run the same admission and per-key limits as the sync path:
per-caller cap on new pending symbols (429), cap per kind (503 with cached data), waited-for marking and expiry,
unknown codes never pending, and the cap on a key's requests in flight (429)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from functions_framework import create_app
from starlette.testclient import TestClient

import shared.gateway as gateway_mod
from shared.backends import api_keys_from_settings
from shared.market import redis_keys
from tests.entry_points import MAIN, Answer

DEV = "dev-key-async-adm"


def codes(start: int, n: int) -> list[str]:
    return [f"{i:06d}" for i in range(start, start + n)]


class Client:
    """One functions-framework ASGI app on one event loop (as one instance serves it)."""

    def __init__(self, target: str) -> None:
        self._c = TestClient(create_app(target, MAIN), raise_server_exceptions=False).__enter__()

    def get(self, path: str, key: str, **headers: str) -> Answer:
        return Answer(self._c.get(path, headers={"X-API-Key": key, **headers}))

    def close(self) -> None:
        self._c.__exit__(None, None, None)


@pytest.fixture
def stack(make_gateway):
    opened: list[Client] = []

    def make(**env: str):
        base = {"GATEWAY_MODE": "local", "GATEWAY_DEV_API_KEY": DEV, "INBOUND_RATE_PER_KEY": "1000",
                "GATEWAY_PENDING_NEW_PER_CALLER_S": "20", "GATEWAY_PENDING_MAX": "60", "TASK_QUEUE": "inline://"}
        gw = make_gateway(**{**base, **env})
        gateway_mod.set_gateway(gw)

        def client(target: str) -> Client:
            opened.append(Client(target))
            return opened[-1]

        return gw, client

    yield make
    for c in opened:
        c.close()
    gateway_mod.set_gateway(None)


def listed(sim, n: int) -> list[str]:
    return [s["code"] for s in sim.symbols() if len(s["code"]) == 6][:n]


def test_a_flood_of_new_codes_from_one_key_is_429_with_retry_after_and_data(stack, redis_client, sim):
    gw, client = stack()
    key, _ = api_keys_from_settings(gw.settings, redis_client=redis_client).create("market:read", rate_per_s=1000)
    want = listed(sim, 50)
    resp = client("daily_prices").get("/?symbols=" + ",".join(want) + "&deadline_ms=0", key)
    assert resp.status_code == 429, resp.get_data(True)[:300]
    assert int(resp.headers["Retry-After"]) >= 1
    body = resp.get_json()
    assert body["error"]["code"] == "too_many_new_symbols"
    assert list(body["daily"]) == want  # every symbol answered, in order
    refused = [s for s, r in body["daily"].items() if "not queued" in (r.get("reason") or "")]
    assert len(refused) == 30
    assert gw.drain.pending["daily"].size() <= 20
    # The operator's own key is not held to the per-caller cap (the cap per kind holds for everyone).
    other = listed(sim, 100)[50:60]
    assert client("daily_prices").get("/?symbols=" + ",".join(other) + "&deadline_ms=0", DEV).status_code == 200


def test_a_full_pending_set_answers_what_it_can_and_is_503_only_with_nothing_to_answer(stack):
    gw, client = stack()
    gw.drain.pending["daily"].add(codes(1000, 60))  # the set is at its cap of 60
    gw.drain.caches["daily"].put_many({"005930": {"bars": [{"date": "2026-11-30", "close": "70000"}]}})
    c = client("daily_prices")
    # Overload is the fleet's doing: a request with data is answered, each symbol that was not queued from its
    # copy or as an error with the reason and when to retry.
    resp = c.get("/?symbols=005930,000660&deadline_ms=0&refresh=true", DEV)
    assert resp.status_code == 200, resp.get_data(True)[:300]
    body = resp.get_json()
    assert body["daily"]["005930"]["status"] == "stale" and body["daily"]["005930"]["bars"]
    reason = body["daily"]["000660"]["reason"]
    assert body["daily"]["000660"]["status"] == "error" and "not queued" in reason and "retry in" in reason
    # Nothing to answer with: 503 with Retry-After, on a refresh and on a plain miss alike.
    for query in ("symbols=000660&refresh=true", "symbols=035420"):
        resp = c.get(f"/?{query}&deadline_ms=0", DEV)
        assert resp.status_code == 503, resp.get_data(True)[:300]
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        body = resp.get_json()
        assert body["error"]["code"] == "pending_full"
        assert all(a["status"] == "error" for a in body["daily"].values())
    assert gw.drain.pending["daily"].size() == 60


def test_a_request_with_nothing_to_answer_waits_for_room_until_its_deadline(stack, monkeypatch):
    """A pending set full for a moment (a burst) does not refuse a request with nothing cached: it asks again for
    room until its deadline, and its symbol is queued; a set that stays full is still 503."""
    gw, client = stack()
    monkeypatch.setattr(gw.drain, "send_request", lambda kind, slot: None)  # nothing is fetched: see the set
    pend = gw.drain.pending["daily"]
    blocking = codes(1000, 60)
    pend.add(blocking)  # the set is at its cap of 60
    c = client("daily_prices")

    def room_later() -> None:
        time.sleep(0.4)
        gw.redis.zrem(redis_keys.pending_set(gw.settings.redis_prefix, "daily"), *blocking[:10])

    threading.Thread(target=room_later, daemon=True).start()
    started = time.monotonic()
    resp = c.get("/?symbols=035420&deadline_ms=1500", DEV)
    assert resp.status_code == 200, resp.get_data(True)[:300]
    assert resp.get_json()["daily"]["035420"]["status"] == "pending"  # queued (never fetched here)
    assert pend.size() == 51
    assert 0.35 <= time.monotonic() - started < 4
    assert gw.metrics.value("admitted_after_wait_total", kind="daily") == 1
    # Full until the deadline: 503 with Retry-After, at the deadline.
    pend.add(codes(2000, 20))
    started = time.monotonic()
    resp = c.get("/?symbols=068270&deadline_ms=500", DEV)
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "pending_full"
    assert 0.3 <= time.monotonic() - started < 2.5


def test_unknown_codes_are_answered_at_once_and_never_pending(stack, monkeypatch):
    gw, client = stack()
    assert gw.symbols is not None and gw.symbols.loaded()
    monkeypatch.setattr(gw.drain, "send_request", lambda kind, slot: None)  # nothing is fetched
    resp = client("quotes").get("/?symbols=999999,999998&deadline_ms=3000", DEV)
    assert resp.status_code == 200, resp.get_data(True)[:300]
    assert {r["status"] for r in resp.get_json()["quotes"].values()} == {"error"}
    assert {r["reason"] for r in resp.get_json()["quotes"].values()} == {"unknown symbol"}
    assert gw.drain.pending["quote"].size() == 0


def test_misses_are_waited_for_until_the_deadline_then_expire(stack, redis_client, monkeypatch):
    gw, client = stack(GATEWAY_PENDING_IDLE_S="0.3")
    monkeypatch.setattr(gw.drain, "send_request", lambda kind, slot: None)  # no drain: see the set
    prefix = gw.settings.redis_prefix
    c = client("daily_prices")
    assert c.get("/?symbols=005930,000660&deadline_ms=300", DEV).status_code == 200
    pend = gw.drain.pending["daily"]
    untils = []
    for s in ("005930", "000660"):
        since = redis_client.zscore(redis_keys.pending_set(prefix, "daily"), s)
        until = redis_client.zscore(redis_keys.pending_wanted(prefix, "daily"), s)
        assert since is not None and until is not None
        assert abs(until - since - 0.3) < 0.01  # waited for until the reader's deadline
        untils.append(until)
    # Idle for 0.3 s after the last reader's deadline, by Redis's clock (the one the claim reads).
    secs, micros = redis_client.time()
    time.sleep(max(0.0, max(untils) + 0.3 + 0.05 - (secs + micros / 1e6)))
    pend.add(["035420"])  # a preload is kept until fetched
    assert pend.claim(10, "drain-1") == ["035420"]
    assert pend.expired == 2 and pend.size() == 1  # nobody waits for the readers' misses any more


def test_claims_serve_a_waiting_reader_before_a_backlog(stack, redis_client, monkeypatch):
    gw, client = stack(GATEWAY_PENDING_MAX="0")
    monkeypatch.setattr(gw.drain, "send_request", lambda kind, slot: None)
    pend = gw.drain.pending["daily"]
    pend.add(codes(0, 200))  # a backlog nobody waits for
    c = client("daily_prices")
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(c.get("/?symbols=005930&deadline_ms=3000", DEV).status_code))
    t.start()
    key = redis_keys.pending_wanted(gw.settings.redis_prefix, "daily")
    for _ in range(300):
        if redis_client.zscore(key, "005930") is not None:
            break
        time.sleep(0.01)
    assert pend.claim(1, "drain-1") == ["005930"]
    t.join(10)
    assert done == [200]


def test_requests_in_flight_per_key_are_capped_with_429(stack, redis_client, monkeypatch):
    from shared.market.reader import AsyncReader

    gw, client = stack()
    key, record = api_keys_from_settings(gw.settings, redis_client=redis_client).create(
        "market:read", rate_per_s=1000, max_concurrent=2)
    entered, release = threading.Semaphore(0), threading.Event()
    real_get = AsyncReader.get

    async def slow_get(self, *a, **kw):
        entered.release()
        for _ in range(1000):
            if release.is_set():
                break
            await asyncio.sleep(0.01)
        return await real_get(self, *a, **kw)

    monkeypatch.setattr(AsyncReader, "get", slow_get)
    c = client("quotes")
    path = "/?symbols=005930&deadline_ms=3000"
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(c.get(path, key).status_code)) for _ in range(2)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)  # two requests in flight
    third = c.get(path, key)
    other_key = c.get(path, DEV)  # another caller is not affected
    release.set()
    for t in threads:
        t.join(10)
    assert third.status_code == 429 and third.get_json()["error"]["code"] == "too_many_in_flight"
    assert third.headers["Retry-After"] == "1"
    assert other_key.status_code == 200
    assert results == [200, 200]
    assert [c.get(path, key).status_code for _ in range(3)] == [200, 200, 200]  # slots were given back
    assert redis_client.zcard(f"{gw.settings.redis_prefix}:inflight:key:{record.key_id}") == 0


def test_slots_held_by_other_instances_count(stack, redis_client):
    gw, client = stack()
    key, record = api_keys_from_settings(gw.settings, redis_client=redis_client).create(
        "market:read", rate_per_s=1000, max_concurrent=2)
    inflight = f"{gw.settings.redis_prefix}:inflight:key:{record.key_id}"
    now = time.time()
    redis_client.zadd(inflight, {"elsewhere-1": now + 30, "elsewhere-2": now + 30})
    c = client("quotes")
    resp = c.get("/?symbols=005930&deadline_ms=0", key)
    assert resp.status_code == 429 and resp.get_json()["error"]["code"] == "too_many_in_flight"
    redis_client.zrem(inflight, "elsewhere-1")
    assert c.get("/?symbols=005930&deadline_ms=0", key).status_code == 200
    assert redis_client.zcard(inflight) == 1  # its own slot was given back, the other instance's kept


def test_a_full_pending_set_answers_200_when_every_refused_symbol_has_a_last_known_copy(stack):
    gw, client = stack()
    gw.drain.pending["daily"].add(codes(1000, 60))  # the set is at its cap of 60
    gw.drain.caches["daily"].put_many({"005930": {"bars": [{"date": "2026-11-30", "close": "70000"}]},
                                       "000660": {"bars": [{"date": "2026-11-30", "close": "180000"}]}})
    resp = client("daily_prices").get("/?symbols=005930,000660&deadline_ms=0&refresh=true", DEV)
    # Overload, but every symbol can be answered with data: stale with its age and why, no HTTP error.
    assert resp.status_code == 200, resp.get_data(True)[:300]
    body = resp.get_json()
    for s in ("005930", "000660"):
        assert body["daily"][s]["status"] == "stale" and body["daily"][s]["bars"]
        assert "not queued" in body["daily"][s]["reason"]
    assert gw.drain.pending["daily"].size() == 60
