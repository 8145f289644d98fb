"""OrderDesk: sent once per key, stored answers for repeats, unknown outcomes never resent."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import time as dtime
from decimal import Decimal

import pytest

from shared.clock import FakeClock, SystemClock
from shared.kis.errors import (
    KISConfigError,
    KISOrderRejectedError,
    KISRateLimitError,
    KISServerError,
    KISTimeoutError,
    KISTokenExpiredError,
    KISTransportError,
)
from shared.kis.models import AccountSummary, Balance, OrderResult, Position
from shared.orders.idempotency import MemoryIdempotencyStore, RedisIdempotencyStore
from shared.orders.service import IdempotencyConflict, NotSentError, Order, OrderDesk

BUY = Order("buy", "005930", 10, "limit", 70000)


class NotGranted(Exception):
    """Stands for the limiter/breaker refusing before any byte is sent."""


class FakeKIS:
    def __init__(self, outcomes=None, delay_s: float = 0.0):
        self.outcomes = list(outcomes or [])
        self.sent: list[Order] = []
        self.refreshes = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def send(self, order: Order) -> OrderResult:
        with self._lock:
            self.sent.append(order)
            outcome = self.outcomes.pop(0) if self.outcomes else None
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(outcome, BaseException):
            raise outcome
        return OrderResult(f"{len(self.sent):010d}", "06590", dtime(15, 10, 59), order.side, order.symbol,
                           order.quantity, order.price)

    def refresh(self) -> None:
        self.refreshes += 1

    def balance(self) -> Balance:
        with self._lock:
            outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        pos = Position("005930", "삼성전자", 10, 10, Decimal("70000.5"), 700005, 71000, 710000, 9995, Decimal("1.43"))
        return Balance([pos], AccountSummary(1000, 1000, 700005, 710000, 9995, 711000, 711000))


def desk(kis: FakeKIS, store=None, clock=None, **kw) -> OrderDesk:
    clock = clock or FakeClock()
    return OrderDesk(send=kis.send, balance=kis.balance, refresh_token=kis.refresh,
                     store=store or MemoryIdempotencyStore(clock), not_sent_before_call=(NotGranted,),
                     clock=clock, **kw)


def test_accepted_order_is_answered_again_from_the_record():
    kis = FakeKIS()
    d = desk(kis)
    first = d.place(BUY, idempotency_key="key-00001", caller="key:a")
    again = d.place(BUY, idempotency_key="key-00001", caller="key:a")
    assert first.status == 200 and first.body["outcome"] == "accepted"
    assert first.body["order"]["order_no"] == "0000000001" and first.body["order"]["price"] == 70000
    assert again.body == first.body and again.status == 200 and again.replayed
    assert len(kis.sent) == 1


def test_same_key_different_body_is_a_conflict_naming_the_mismatch():
    kis = FakeKIS()
    d = desk(kis)
    d.place(BUY, idempotency_key="key-00001", caller="c")
    with pytest.raises(IdempotencyConflict) as err:
        d.place(Order("buy", "005930", 11, "limit", 70000), idempotency_key="key-00001", caller="c")
    assert not err.value.in_progress and "different order body" in str(err.value)
    assert len(kis.sent) == 1


def test_keys_belong_to_their_caller():
    kis = FakeKIS()
    d = desk(kis)
    d.place(BUY, idempotency_key="key-00001", caller="key:a")
    d.place(BUY, idempotency_key="key-00001", caller="key:b")
    assert len(kis.sent) == 2


def test_without_a_key_nothing_is_deduplicated():
    kis = FakeKIS()
    d = desk(kis)
    d.place(BUY, idempotency_key=None, caller="legacy")
    d.place(BUY, idempotency_key=None, caller="legacy")
    assert len(kis.sent) == 2


@pytest.mark.parametrize("exc", [KISTimeoutError("no answer", sent=True), KISTransportError("reset", sent=True),
                                 KISServerError("boom", http_status=500), RuntimeError("bug after sending")])
def test_possibly_sent_order_is_unknown_and_never_resent(exc):
    kis = FakeKIS([exc])
    d = desk(kis)
    first = d.place(BUY, idempotency_key="key-00001", caller="c")
    again = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert first.status == 202 and first.body["outcome"] == "unknown"
    assert first.body["check"] == "/v1/account/balance" and "will not be sent again" in first.body["message"]
    assert again.body == first.body and again.status == 202
    assert len(kis.sent) == 1


def test_rejection_is_a_stored_answer():
    kis = FakeKIS([KISOrderRejectedError("주문가능금액을 초과 했습니다", msg_cd="APBK0952")])
    d = desk(kis)
    first = d.place(BUY, idempotency_key="key-00001", caller="c")
    again = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert first.status == 422 and first.body["kis_code"] == "APBK0952"
    assert again.body == first.body and len(kis.sent) == 1


@pytest.mark.parametrize("exc,status", [(KISRateLimitError("too many", msg_cd="EGW00201"), 503),
                                        (KISTransportError("refused", sent=False), 503),
                                        (NotGranted("breaker open"), 503),
                                        (KISConfigError("bad key", msg_cd="EGW00103"), 502)])
def test_order_not_sent_releases_the_key_so_the_same_key_may_try_again(exc, status):
    kis = FakeKIS([exc])
    d = desk(kis)
    first = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert first.status == status and first.body["outcome"] == "not_sent"
    second = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert second.status == 200 and len(kis.sent) == 2


def test_refused_token_is_refreshed_once_and_the_order_sent_once_more():
    kis = FakeKIS([KISTokenExpiredError("expired", msg_cd="EGW00123")])
    d = desk(kis)
    answer = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert answer.status == 200 and kis.refreshes == 1 and len(kis.sent) == 2


def test_token_refused_twice_is_not_sent_and_not_retried_further():
    kis = FakeKIS([KISTokenExpiredError("expired", msg_cd="EGW00123"),
                   KISTokenExpiredError("expired", msg_cd="EGW00123")])
    d = desk(kis)
    answer = d.place(BUY, idempotency_key="key-00001", caller="c")
    assert answer.status == 503 and kis.refreshes == 1 and len(kis.sent) == 2


def test_repeat_while_first_is_in_progress_waits_then_answers_409():
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock)
    store.claim("c:key-00001", BUY.fingerprint(), "someone-else")
    kis = FakeKIS()
    d = desk(kis, store=store, clock=clock, repeat_wait_s=3.0)
    start = clock.monotonic()
    with pytest.raises(IdempotencyConflict) as err:
        d.place(BUY, idempotency_key="key-00001", caller="c")
    assert err.value.in_progress and clock.monotonic() - start >= 3.0
    assert kis.sent == []


def test_repeat_of_a_claim_abandoned_long_ago_is_unknown_not_resent():
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock)
    store.claim("c:key-00001", BUY.fingerprint(), "crashed-instance")
    clock.advance(600)
    kis = FakeKIS()
    answer = desk(kis, store=store, clock=clock, stale_after_s=120).place(BUY, idempotency_key="key-00001",
                                                                          caller="c")
    assert answer.status == 202 and answer.body["outcome"] == "unknown" and kis.sent == []


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_twenty_concurrent_requests_one_order_identical_answers(backend, request):
    clock = SystemClock()
    if backend == "redis":
        store = RedisIdempotencyStore(request.getfixturevalue("redis_client"),
                                      prefix=request.getfixturevalue("redis_prefix"))
    else:
        store = MemoryIdempotencyStore(clock)
    kis = FakeKIS(delay_s=0.2)
    d = desk(kis, store=store, clock=clock, repeat_wait_s=10.0)
    barrier = threading.Barrier(20)

    def place(_: int):
        barrier.wait(timeout=10)
        a = d.place(BUY, idempotency_key="key-concurrent", caller="c")
        return a.status, a.body

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(place, range(20)))
    assert len(kis.sent) == 1
    assert all(a == answers[0] for a in answers) and answers[0][0] == 200


def test_balance_is_plain_json_with_exact_decimals():
    d = desk(FakeKIS())
    bal = d.balance()
    assert bal["count"] == 1 and bal["positions"][0]["avg_price"] == "70000.5"
    assert bal["totals"]["cash"] == 1000


def test_balance_failure_before_sending_is_not_sent_error():
    d = desk(FakeKIS([NotGranted("no grant")]))
    with pytest.raises(NotSentError):
        d.balance()
