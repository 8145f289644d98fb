"""No rate grant within the deadline: account calls answer 429 (not sent, ask again), and multi-page balances
are admitted a few at a time so the ones started can finish."""

from __future__ import annotations

import threading
import time

import pytest

from shared.clock import FakeClock
from shared.market.gate import CallerCap
from shared.market.limiter import RateLimitTimeout
from shared.orders.idempotency import MemoryIdempotencyStore
from shared.orders.service import NotSentError, Order, OrderDesk

BUY = Order("buy", "005930", 10, "limit", 70000)


def desk(send, balance):
    return OrderDesk(send=send, balance=balance, refresh_token=lambda: None,
                     store=MemoryIdempotencyStore(FakeClock()), clock=FakeClock(),
                     not_sent_before_call=(RateLimitTimeout,), busy_before_call=(RateLimitTimeout,))


def test_caller_cap_lets_limit_callers_in_and_the_next_gives_up_within_its_wait():
    cap = CallerCap(2)
    inside = threading.Barrier(3)
    leave = threading.Event()

    def hold():
        with cap.enter("orders", 1.0):
            inside.wait(5)
            leave.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    inside.wait(5)
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout), cap.enter("orders", 0.2):
        pass
    assert time.monotonic() - started < 2.0  # gave up after its wait, not after the holders
    leave.set()
    for t in holders:
        t.join(5)
    with cap.enter("orders", 0.2):  # free again
        pass


def test_balance_without_a_grant_in_time_is_429_not_sent():
    def balance():
        raise RateLimitTimeout("orders", 2.0, 0.05, 2.0)

    with pytest.raises(NotSentError) as err:
        desk(lambda order: None, balance).balance()
    assert err.value.status == 429 and err.value.code == "rate_budget_busy" and err.value.retry_after_s


def test_order_without_a_grant_in_time_is_429_and_the_key_stays_usable():
    calls = []

    def send(order):
        calls.append(order)
        if len(calls) == 1:
            raise RateLimitTimeout("orders", 2.0, 0.05, 2.0)
        from datetime import time as dtime

        from shared.kis.models import OrderResult
        return OrderResult("0000000001", "06590", dtime(10, 0), order.side, order.symbol, order.quantity,
                           order.price)

    d = desk(send, lambda: None)
    first = d.place(BUY, idempotency_key="busy-0001", caller="c")
    assert first.status == 429 and first.body["outcome"] == "not_sent"
    assert first.body["error"]["code"] == "rate_budget_busy" and first.body["retry_after_s"]
    again = d.place(BUY, idempotency_key="busy-0001", caller="c")
    assert again.status == 200 and again.body["outcome"] == "accepted"
