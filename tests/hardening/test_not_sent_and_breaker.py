"""Failures before a request leaves are "not sent" (orders) and no verdict on KIS (breaker)."""

from __future__ import annotations

import json

import pytest
import redis

from shared.clock import FakeClock
from shared.kis.errors import KISConfigError, KISServerError, KISTokenExpiredError, mark_not_sent
from shared.market.breaker import CLOSED, OPEN, MemoryBreakerStorage, SharedBreaker, local_failure_kind
from shared.market.limiter import RateLimitTimeout
from shared.market.token import TokenUnavailableError
from shared.orders.idempotency import MemoryIdempotencyStore
from shared.orders.service import Order, OrderDesk
from tests.hardening.conftest import post_order

BUY = Order("buy", "005930", 1, "limit", 70000)
LOCAL = [RateLimitTimeout("quotes", 0.1, 0.5, 0.1), TokenUnavailableError("token store unreachable"),
         redis.ConnectionError("connection refused"), KISConfigError("no access token source configured"),
         KISTokenExpiredError("expired", msg_cd="EGW00123")]


def _raise(exc: BaseException):
    def fn():
        raise exc
    return fn


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_local_failures_never_open_the_breaker_nor_end_a_run(storage, redis_client, redis_prefix):
    from shared.market.breaker import RedisBreakerStorage

    store = MemoryBreakerStorage() if storage == "memory" else RedisBreakerStorage(redis_client, redis_prefix)
    seen: list[str] = []
    breaker = SharedBreaker(store, fail_max=3, reset_timeout_s=60, clock=FakeClock())
    breaker.add_local_failure_listener(lambda exc: seen.append(local_failure_kind(exc)))
    for _ in range(10):
        for exc in LOCAL:
            with pytest.raises(type(exc)):
                breaker.call(_raise(exc))
    assert breaker.state == CLOSED and breaker.failure_count == 0
    assert set(seen) == {"limiter", "token", "redis", "config"}
    assert breaker.local_failures  # reported as what they are
    # A KIS fault run is not reset by a local failure in between, and does open the breaker.
    with pytest.raises(KISServerError):
        breaker.call(_raise(KISServerError("boom", http_status=500)))
    with pytest.raises(TokenUnavailableError):
        breaker.call(_raise(TokenUnavailableError("x")))
    for _ in range(2):
        with pytest.raises(KISServerError):
            breaker.call(_raise(KISServerError("boom", http_status=503)))
    assert breaker.state == OPEN


class Desk:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.sent = 0

    def send(self, order):
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome  # raised before the wire (tagged) stands for the limiter/token/Redis step
        self.sent += 1
        from datetime import time as dtime

        from shared.kis.models import OrderResult
        return OrderResult(f"{self.sent:010d}", "06590", dtime(10, 0), order.side, order.symbol, order.quantity,
                           order.price)


@pytest.mark.parametrize("exc", [redis.ConnectionError("down"), RateLimitTimeout("orders", 0, 1, 0.5),
                                 TokenUnavailableError("store down"), KISConfigError("no token source"),
                                 RuntimeError("anything before the wire")])
def test_failure_before_the_wire_is_not_sent_and_the_key_stays_usable(exc):
    kis = Desk([mark_not_sent(exc)])
    desk = OrderDesk(send=kis.send, balance=lambda: None, refresh_token=lambda: None,
                     store=MemoryIdempotencyStore(FakeClock()), clock=FakeClock())
    first = desk.place(BUY, idempotency_key="k-000001", caller="c")
    assert first.status == 503 and first.body["outcome"] == "not_sent"
    again = desk.place(BUY, idempotency_key="k-000001", caller="c")
    assert again.status == 200 and again.body["outcome"] == "accepted" and kis.sent == 1


def test_token_refresh_failing_after_egw00123_is_not_sent():
    kis = Desk([KISTokenExpiredError("expired", msg_cd="EGW00123")])

    def refresh():
        raise redis.ConnectionError("token lock unreachable")

    desk = OrderDesk(send=kis.send, balance=lambda: None, refresh_token=refresh,
                     store=MemoryIdempotencyStore(FakeClock()), clock=FakeClock())
    answer = desk.place(BUY, idempotency_key="k-000002", caller="c")
    assert answer.status == 503 and answer.body["outcome"] == "not_sent" and kis.sent == 0


# ---- the same over HTTP, through the real client, limiter and breaker against the simulator ----------

def _post(app, idem):
    return post_order(app, idem)


@pytest.mark.parametrize("part", ["limiter", "token"])
def test_order_stopped_by_redis_before_sending_is_503_not_sent_then_retries_fine(order_stack, sim, monkeypatch,
                                                                                 part):
    gw, app = order_stack
    assert _post(app, "warm-up-1")[0] == 200  # token issued, one order placed
    placed = sim.stats()["orders"]

    def down(*a, **k):
        raise redis.ConnectionError("Redis restarting")

    target = (gw.limiter, "acquire") if part == "limiter" else (gw.tokens, "get")
    original = getattr(*target)
    monkeypatch.setattr(*target, down)
    for _ in range(4):  # more than BREAKER_FAIL_MAX
        status, body, headers = _post(app, "order-redis-1")
        assert status == 503 and "not sent" in body["error"]["message"], body
        assert headers.get("Retry-After")
    assert gw.breaker.state == CLOSED and gw.breaker.failure_count == 0
    assert "kis_local_failures_total" in json.dumps(gw.metrics.snapshot())  # counted under its own name
    monkeypatch.setattr(*target, original)
    status, body, _ = _post(app, "order-redis-1")
    assert status == 200 and body["outcome"] == "accepted"
    assert sim.stats()["orders"] == placed + 1


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_a_probe_that_never_reached_kis_hands_the_probe_back(storage, redis_client, redis_prefix):
    from shared.market.breaker import BreakerOpenError, RedisBreakerStorage

    store = MemoryBreakerStorage() if storage == "memory" else RedisBreakerStorage(redis_client, redis_prefix)
    clock = FakeClock()
    breaker = SharedBreaker(store, fail_max=2, reset_timeout_s=60, clock=clock)
    for _ in range(2):
        with pytest.raises(KISServerError):
            breaker.call(_raise(KISServerError("boom", http_status=500)))
    assert breaker.state == OPEN
    clock.advance(61)
    with pytest.raises(TokenUnavailableError):  # this instance has no token: its probe says nothing about KIS
        breaker.call(_raise(TokenUnavailableError("no token")))
    assert breaker.call(lambda: "ok") == "ok"  # another caller probes at once, not after the probe lease
    assert breaker.state == CLOSED
    for _ in range(2):  # and KIS faults still open it
        with pytest.raises(KISServerError):
            breaker.call(_raise(KISServerError("boom", http_status=500)))
    with pytest.raises(BreakerOpenError):
        breaker.call(lambda: "not called")
