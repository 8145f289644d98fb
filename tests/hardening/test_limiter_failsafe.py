"""The limiter fails safe: its state wiped mid-overload, it grants nothing for one window, so KIS (the simulator)
never sees more than its limit in any second."""

from __future__ import annotations

import threading
import time

from shared.kis.errors import KISError
from shared.market import redis_keys


def limiter_keys(gw) -> list[str]:
    from shared.gateway import app_key_id

    prefix, key_id = gw.settings.redis_prefix, app_key_id(gw.settings)
    return [redis_keys.limiter_log(prefix, key_id), redis_keys.limiter_state(prefix, key_id),
            redis_keys.limiter_epoch(prefix, key_id), redis_keys.limiter_reports(prefix, key_id)]


def test_no_limiter_key_expires(make_gateway, redis_client):
    gw = make_gateway()
    gw.limiter.acquire("quotes", 2.0)
    gw.limiter.report_rate_limited()
    for key in limiter_keys(gw):
        if redis_client.exists(key):
            assert redis_client.ttl(key) == -1, key


def test_flushing_the_limiter_mid_overload_gives_zero_violations(make_gateway, sim, redis_client):
    # No spacing: the budget may be taken as a burst, so a limiter that forgot its last second would at once
    # grant a second burst on top of the calls already made.
    # A wide guard band: on a busy machine a granted call can reach the simulator a few hundred ms late, which
    # would count against the simulator's window whatever the limiter's state (this test is about the flush).
    gw = make_gateway(GATEWAY_MIN_CALL_SPACING_MS="0", RETRY_ATTEMPTS="1", GATEWAY_LIMITER_GUARD_MS="300")
    sim.reset_stats()
    stop = time.monotonic() + 4.0
    calls = [0]
    lock = threading.Lock()

    def one_call():
        try:
            gw.kis.get_current_price("005930")  # the client's gate takes a grant first
        except (TimeoutError, KISError):
            return
        with lock:
            calls[0] += 1

    def hammer():
        while time.monotonic() < stop:
            one_call()

    threads = [threading.Thread(target=hammer) for _ in range(12)]
    for t in threads:
        t.start()
    held = []
    for at in (1.3, 2.8):
        time.sleep(max(0.0, at - (4.0 - (stop - time.monotonic()))))
        redis_client.delete(*limiter_keys(gw))  # eviction / failover / FLUSHALL of the limiter's state
        held.append(gw.limiter.try_acquire("orders"))
        # New requests keep arriving right after the loss, as they would on a busy gateway.
        newcomers = [threading.Thread(target=one_call) for _ in range(17)]
        for t in newcomers:
            t.start()
        threads += newcomers
    for t in threads:
        t.join(10)
    stats = sim.stats()
    assert calls[0] > 30, "the overload never happened"
    # The simulator refuses (EGW00201) what would exceed its limit, so a refusal is a limit the gateway broke.
    assert stats["refused"].get("EGW00201", 0) == 0, stats["refused"]
    assert stats["violations"] == 0, stats["max_calls_in_any_1s_window"]
    assert max(stats["max_calls_in_any_1s_window"].values()) <= 18
    assert all(isinstance(h, float) and h > 0 for h in held)  # right after the loss: a wait, not a grant


def test_only_cache_entries_can_be_evicted(make_gateway, redis_client):
    """Memorystore evicts keys with a TTL first (volatile-*): every cache entry has one, and no limiter or
    pending key does, so memory pressure drops cached data, never the limiter's log or accepted work."""
    import re
    from pathlib import Path

    tf = (Path(__file__).resolve().parents[2] / "terraform" / "redis.tf").read_text()
    assert re.search(r'maxmemory-policy\s*=\s*"volatile-(lru|lfu|ttl|random)"', tf)

    gw = make_gateway(TASK_QUEUE="inline://")
    gw.reader.get("quote", ["005930", "000660"], deadline_s=5)
    gw.reader.get("daily", ["005930"], deadline_s=5)
    gw.drain.pending["daily"].add(["035420"])  # accepted work still pending
    gw.drain.pending["info"].admit(["035720"], caller="key:x", wait_s=1)
    gw.limiter.report_rate_limited()
    prefix = gw.settings.redis_prefix
    seen = {"cache": 0, "kept": 0}
    for raw in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        ttl = redis_client.ttl(key)
        if key.startswith(f"{prefix}:cache:"):
            assert ttl > 0, key
            seen["cache"] += 1
        elif key.startswith((f"{prefix}:lim:", f"{prefix}:pend:")) and not re.search(r":(new|fail):", key):
            assert ttl == -1, key
            seen["kept"] += 1
    assert seen["cache"] >= 4 and seen["kept"] >= 5, seen


def test_flushing_the_limiter_under_an_overload_of_the_asgi_read_function(make_gateway, sim, redis_client):
    """The same fail-safe on the deployed read path: readers of the ASGI daily_prices function keep asking for
    new copies (one KIS call a symbol) while the limiter's state is wiped twice; the simulator sees no second
    above its limit."""
    import random

    from functions_framework import create_app
    from starlette.testclient import TestClient

    import shared.gateway as gateway_mod
    from tests.entry_points import MAIN

    dev = "dev-key-failsafe-asgi"
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=dev, INBOUND_RATE_PER_KEY="1000",
                      GATEWAY_MIN_CALL_SPACING_MS="0", RETRY_ATTEMPTS="1", TASK_QUEUE="inline://",
                      GATEWAY_LIMITER_GUARD_MS="300")  # late arrivals on a busy machine: see the test above
    gateway_mod.set_gateway(gw)
    listed = [s["code"] for s in sim.symbols() if len(s["code"]) == 6][:300]
    sim.reset_stats()
    stop = time.monotonic() + 4.0
    answers: dict[int, int] = {}
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with TestClient(create_app("daily_prices", MAIN), raise_server_exceptions=False) as c:
            while time.monotonic() < stop:
                codes = ",".join(rng.sample(listed, 5))
                r = c.get(f"/?symbols={codes}&refresh=true&deadline_ms=2000", headers={"X-API-Key": dev})
                with lock:
                    answers[r.status_code] = answers.get(r.status_code, 0) + 1

    try:
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        held = []
        for at in (1.3, 2.8):
            time.sleep(max(0.0, at - (4.0 - (stop - time.monotonic()))))
            redis_client.delete(*limiter_keys(gw))  # eviction / failover / FLUSHALL of the limiter's state
            held.append(gw.limiter.try_acquire("orders"))
        for t in threads:
            t.join(30)
    finally:
        gateway_mod.set_gateway(None)
    stats = sim.stats()
    assert answers.get(200, 0) > 8, answers
    assert sum(stats["calls"].values()) > 30, "the overload never happened"
    assert stats["refused"].get("EGW00201", 0) == 0, stats["refused"]
    assert stats["violations"] == 0, stats["max_calls_in_any_1s_window"]
    assert all(isinstance(h, float) and h > 0 for h in held)  # right after the loss: a wait, not a grant
