"""The cache hit's lane of the async serve path (`serve_async._cache_hit`): a read whose every decision was made
before answers as the general path does, and a decision that no longer holds (a revoked key, another Origin,
a spent rate) is never taken from it."""

import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shared.api import serve_async
from shared.gateway import set_gateway

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")
SYMBOLS = "005930,000660"


@pytest.fixture
def lane(monkeypatch):
    """Counts the requests the lane answered (the others went the general way)."""
    seen = {"answered": 0, "passed": 0}
    real = serve_async._cache_hit

    def counting(scope, handler, gateway):
        got = real(scope, handler, gateway)
        seen["answered" if got is not None else "passed"] += 1
        return got

    monkeypatch.setattr(serve_async, "_cache_hit", counting)
    return seen


@pytest.fixture
def app(make_gateway):
    def make(**env):
        gw = make_gateway(**env)
        set_gateway(gw)
        from functions_framework.aio import create_asgi_app

        return gw, create_asgi_app("quotes", MAIN)

    yield make
    set_gateway(None)


def _until_lane_answers(c, lane, headers, path=f"/?symbols={SYMBOLS}"):
    """Ask until the lane answers (the first answer fetches, the next fill the near cache); the last response."""
    deadline = time.monotonic() + 10
    before = lane["answered"]
    while True:
        resp = c.get(path, headers=headers)
        assert resp.status_code == 200, resp.text
        if lane["answered"] > before or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def _without_times(body):
    for answer in body["quotes"].values():
        answer.pop("age_s", None)
    body.pop("served_at")
    return body


def test_a_cache_hit_is_answered_as_the_general_path_answers_it(app, lane, monkeypatch):
    gw, asgi = app(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    headers = {"X-API-Key": "test-dev-key"}
    with TestClient(asgi) as c:
        fast = _until_lane_answers(c, lane, headers)
        assert lane["answered"] >= 1
        # What the general path reads and the lane does not (a caller's request id) goes the general way.
        passed = lane["passed"]
        echoed = c.get(f"/?symbols={SYMBOLS}", headers={**headers, "X-Request-Id": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123" and lane["passed"] == passed + 1
        monkeypatch.setattr(serve_async, "_cache_hit", lambda *a: None)  # the general path alone
        general = c.get(f"/?symbols={SYMBOLS}", headers=headers)
    assert general.status_code == fast.status_code == 200
    assert _without_times(fast.json()) == _without_times(general.json()) == _without_times(echoed.json())
    assert all(a["status"] == "fresh" and a["age_s"] >= 0 for a in fast.json()["quotes"].values())
    assert {k: v for k, v in fast.headers.items() if k not in ("x-request-id", "content-length")} == \
        {k: v for k, v in general.headers.items() if k not in ("x-request-id", "content-length")}
    assert fast.headers["vary"] == "Origin"
    assert len(fast.headers["x-request-id"]) == 32 and fast.headers["x-request-id"] != general.headers["x-request-id"]


def test_the_lane_keeps_a_keys_origin_and_revocation(app, lane):
    from shared.backends import api_keys_from_settings

    gw, asgi = app(GATEWAY_MODE="cloud", IDEMPOTENCY_STORE="redis://", GATEWAY_API_KEY_PEPPER="test-pepper",
                   CORS_ORIGINS="https://app.example")
    keys = api_keys_from_settings(gw.settings, redis_client=gw.redis)
    key, record = keys.create("market:read", "browser", origins="https://app.example")
    mine = {"X-API-Key": key, "Origin": "https://app.example"}
    with TestClient(asgi) as c:
        fast = _until_lane_answers(c, lane, mine)
        assert fast.headers["access-control-allow-origin"] == "https://app.example"
        # The same key from another origin: refused, whatever was decided for the first.
        other = c.get(f"/?symbols={SYMBOLS}", headers={"X-API-Key": key, "Origin": "https://elsewhere.example"})
        assert other.status_code == 403 and other.json()["error"]["code"] == "origin_not_allowed"
        keys.revoke(record.key_id)
        deadline = time.monotonic() + 1.5
        while (resp := c.get(f"/?symbols={SYMBOLS}", headers=mine)).status_code == 200:
            assert time.monotonic() < deadline, "a revoked key was still answered 1.5 s after the notice"
            time.sleep(0.02)
    assert resp.status_code == 401


def test_the_lane_answers_no_more_than_the_keys_rate(app, lane):
    gw, asgi = app(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key", INBOUND_RATE_PER_KEY="5")
    headers = {"X-API-Key": "test-dev-key"}
    with TestClient(asgi) as c:
        time.sleep(1.1)  # the key's burst is whole again
        started = time.monotonic()
        codes = [c.get(f"/?symbols={SYMBOLS}", headers=headers).status_code for _ in range(40)]
        took = time.monotonic() - started
    assert 429 in codes
    # At most the burst and what the rate added meanwhile, lane or not.
    assert codes.count(200) <= 5 + 5 * took + 1


def test_a_querys_answer_is_kept_while_its_copies_are_and_never_outlives_a_change(app, lane, monkeypatch):
    """The lane keeps a query's answer while the near cache it came from is unchanged and the reader's moment
    has not come (a copy running out, its refresh ahead due): a request in the same millisecond gets the same
    body, a later one the kept parts with its own ages and time, and each is counted; a newer copy in the near
    cache makes a new answer at once."""
    from types import SimpleNamespace

    from shared.market import reader as reader_module
    from shared.market.cache import CacheEntry

    gw, asgi = app(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key", INBOUND_RATE_PER_KEY="100000")
    headers = {"X-API-Key": "test-dev-key"}
    path = "/?symbols=005930"
    with TestClient(asgi) as c:
        _until_lane_answers(c, lane, headers, path)
        for _ in range(20):  # the key's rate lease in this process has grown past these few requests
            _until_lane_answers(c, lane, headers, path)
        reader = reader_module._last[2]
        reads = []
        real_read = reader.near_read
        monkeypatch.setattr(reader, "near_read", lambda *a: reads.append(a[2]) or real_read(*a))
        now = [time.time()]
        # The wall (the time served) and the service's clock (the ages) move only when the test moves them.
        monkeypatch.setattr(serve_async, "time", SimpleNamespace(time=lambda: now[0], perf_counter=time.perf_counter,
                                                                 monotonic=time.monotonic))
        real_clock = reader.drain.clock
        monkeypatch.setattr(reader.drain, "clock", SimpleNamespace(time=lambda: now[0], monotonic=real_clock.monotonic,
                                                                   sleep=real_clock.sleep))
        # A copy of its own, stored 10 ms ago and fresh for 2 s, so the moments below are the test's.
        kept = reader.near.get("quote", "005930", now[0])
        assert kept is not None
        price = kept.value["price"] + 100
        mine = CacheEntry({**kept.value, "price": price}, now[0] - 0.01, True, 0.01, now[0] + 1.99)
        reader.near.put("quote", {"005930": mine}, reader.near.generation("quote"))
        counted = gw.metrics.value("symbol_results_total", kind="quote", status="fresh")
        answered = lane["answered"]
        first, second = c.get(path, headers=headers), c.get(path, headers=headers)
        assert first.json()["quotes"]["005930"]["price"] == price  # made at once from the newer copy
        assert first.content == second.content and first.headers["x-request-id"] != second.headers["x-request-id"]
        assert len(reads) == 1

        now[0] += 0.1  # a later millisecond: the kept parts, this request's age and time
        third = c.get(path, headers=headers).json()
        assert third["quotes"]["005930"]["age_s"] == 0.11 and third["served_at"] != first.json()["served_at"]
        assert len(reads) == 1
        assert lane["answered"] == answered + 3
        assert gw.metrics.value("symbol_results_total", kind="quote", status="fresh") == counted + 3

        # A newer copy reaches the near cache within the same millisecond: the next answer is made from it.
        newer = CacheEntry({**mine.value, "price": price + 100}, now[0], True, 0.0, now[0] + 1.99)
        reader.near.put("quote", {"005930": newer}, reader.near.generation("quote"))
        fourth = c.get(path, headers=headers).json()
        assert fourth["quotes"]["005930"]["price"] == price + 100 and fourth["quotes"]["005930"]["age_s"] == 0.0
        assert len(reads) == 2

        # Its refresh ahead falls due at its lead before the end: the read is made again then, and asks for it.
        lead = reader.near.lead_s("quote", reader.drain.caches["quote"].ttl_s)
        now[0] = newer.fresh_until - lead - 0.01
        c.get(path, headers=headers)  # a new answer (ages were not known to the kept one: a copy of age 0)
        reads_before = len(reads)
        now[0] += 0.005
        c.get(path, headers=headers)
        assert len(reads) == reads_before  # still kept: the ages joined anew
        now[0] += 0.01
        asked = gw.metrics.value("refresh_ahead_total", kind="quote")
        c.get(path, headers=headers)
        assert len(reads) == reads_before + 1
        deadline = time.monotonic() + 5
        while gw.metrics.value("refresh_ahead_total", kind="quote") == asked:
            assert time.monotonic() < deadline, "the refresh ahead was not asked for"
            time.sleep(0.02)
