"""One behaviour suite for SharedBreaker, run against every storage (memory, Redis, Firestore emulator)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pybreaker
import pytest
import redis

from shared.clock import FakeClock
from shared.kis.errors import KISBusinessError, KISServerError, KISUnknownSymbolError
from shared.market.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerOpenError,
    MemoryBreakerStorage,
    RedisBreakerStorage,
    SharedBreaker,
)

FAIL_MAX = 20
RESET_S = 60.0




@pytest.fixture(params=["memory", "redis", "firestore"])
def make_storage(request):
    """A factory of storages that all share one breaker state (as separate instances would)."""
    kind = request.param
    if kind == "memory":
        shared = MemoryBreakerStorage()
        return lambda: shared
    if kind == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        client = request.getfixturevalue("redis_client")
        return lambda: RedisBreakerStorage(client, prefix)
    os.environ["FIRESTORE_EMULATOR_HOST"] = request.getfixturevalue("firestore_host")
    from google.cloud import firestore

    from shared.cloud.firestore_breaker import FirestoreBreakerStorage

    client = firestore.Client(project=f"test-{uuid.uuid4().hex[:8]}")
    name = f"kis-{uuid.uuid4().hex[:6]}"
    # No read cache here: these tests switch between instances without letting time pass.
    return lambda: FirestoreBreakerStorage(client, name=name, read_ttl_s=0)


@pytest.fixture
def clock():
    return FakeClock()


def make_breaker(storage, clock, **kw):
    events: list[tuple[str, str]] = []
    kw.setdefault("fail_max", FAIL_MAX)
    kw.setdefault("reset_timeout_s", RESET_S)
    breaker = SharedBreaker(storage, clock=clock, listeners=[lambda old, new: events.append((old, new))], **kw)
    breaker.events = events  # type: ignore[attr-defined]
    return breaker


def fail() -> None:
    raise KISServerError("boom", msg_cd="EGW00001", http_status=500)


def fail_n(breaker: SharedBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(KISServerError):
            breaker.call(fail)


def trip(breaker: SharedBreaker) -> None:
    fail_n(breaker, breaker.fail_max)
    assert breaker.state == OPEN


def test_opens_after_fail_max_consecutive_failures(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    fail_n(breaker, FAIL_MAX - 1)
    assert breaker.state == CLOSED
    assert breaker.failure_count == FAIL_MAX - 1
    fail_n(breaker, 1)
    assert breaker.state == OPEN
    assert breaker.opened_at == pytest.approx(clock.time())

    called = []
    clock.advance(10)
    with pytest.raises(BreakerOpenError) as info:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert info.value.opened_at == pytest.approx(clock.time() - 10)
    assert info.value.retry_after_s == pytest.approx(RESET_S - 10)
    assert isinstance(info.value, pybreaker.CircuitBreakerError)
    assert breaker.events == [(CLOSED, OPEN)]


def test_business_errors_do_not_count(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    business = [KISBusinessError("no", msg_cd="APBK0000"), KISUnknownSymbolError("999999"), ValueError("x"),
                KeyError("k")]
    for i in range(3 * FAIL_MAX):
        exc = business[i % len(business)]

        def raise_it(exc: BaseException = exc) -> None:
            raise exc

        with pytest.raises(type(exc)):
            breaker.call(raise_it)
    assert breaker.state == CLOSED
    assert breaker.failure_count == 0

    # A business error is an answer from KIS: it ends a run of failures like a success does.
    fail_n(breaker, FAIL_MAX - 1)
    with pytest.raises(ValueError):
        breaker.call(lambda: int("x"))
    fail_n(breaker, FAIL_MAX - 1)
    assert breaker.state == CLOSED


def test_exclude_list_is_configurable(make_storage, clock):
    class Refused(Exception):
        pass

    breaker = make_breaker(make_storage(), clock, fail_max=3, exclude=(Refused, lambda e: "ignore" in str(e)))
    for exc in (Refused(), RuntimeError("ignore me"), Refused()):
        with pytest.raises(type(exc)):
            breaker.call(lambda exc=exc: (_ for _ in ()).throw(exc))
    assert breaker.state == CLOSED
    for _ in range(3):  # ValueError is no longer excluded
        with pytest.raises(ValueError):
            breaker.call(lambda: int("x"))
    assert breaker.state == OPEN


def test_success_resets_the_run(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    fail_n(breaker, FAIL_MAX - 1)
    assert breaker.call(lambda: 42) == 42
    fail_n(breaker, FAIL_MAX - 1)
    assert breaker.state == CLOSED
    fail_n(breaker, 1)
    assert breaker.state == OPEN


def test_half_open_after_timeout_and_probe_success_closes(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    trip(breaker)
    clock.advance(RESET_S - 0.1)
    with pytest.raises(BreakerOpenError):
        breaker.call(lambda: "early")
    clock.advance(0.1)
    seen_state = []
    assert breaker.call(lambda: seen_state.append(breaker.state) or "probe") == "probe"
    assert seen_state == [HALF_OPEN]
    assert breaker.state == CLOSED
    assert breaker.opened_at is None
    assert breaker.failure_count == 0
    assert breaker.events == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    fail_n(breaker, FAIL_MAX - 1)  # a fresh run is needed to open again
    assert breaker.state == CLOSED


def test_probe_failure_reopens_for_another_timeout(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    trip(breaker)
    clock.advance(RESET_S + 5)
    probe_time = clock.time()
    fail_n(breaker, 1)
    assert breaker.state == OPEN
    assert breaker.opened_at == pytest.approx(probe_time)
    clock.advance(RESET_S - 1)
    with pytest.raises(BreakerOpenError) as info:
        breaker.call(lambda: "x")
    assert info.value.retry_after_s == pytest.approx(1)
    assert breaker.events == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


def test_business_error_in_probe_closes(make_storage, clock):
    breaker = make_breaker(make_storage(), clock)
    trip(breaker)
    clock.advance(RESET_S)
    with pytest.raises(KISUnknownSymbolError):
        breaker.call(lambda: (_ for _ in ()).throw(KISUnknownSymbolError("000000")))
    assert breaker.state == CLOSED


def test_one_probe_across_instances(make_storage, clock):
    first, second = make_breaker(make_storage(), clock), make_breaker(make_storage(), clock)
    trip(first)
    assert second.state == OPEN
    clock.advance(RESET_S)

    entered, release = threading.Event(), threading.Event()
    probes: list[str] = []

    def slow_probe(who: str) -> str:
        probes.append(who)
        entered.set()
        assert release.wait(10)
        return who

    with ThreadPoolExecutor(1) as pool:
        probe = pool.submit(first.call, slow_probe, "first")
        assert entered.wait(10)
        for breaker in (second, first, second):  # the other instance and a second caller of the first
            with pytest.raises(BreakerOpenError):
                breaker.call(slow_probe, "other")
        assert second.state == HALF_OPEN
        release.set()
        assert probe.result(10) == "first"
    assert probes == ["first"]
    assert second.state == CLOSED
    assert second.call(lambda: "ok") == "ok"
    assert (HALF_OPEN, CLOSED) in second.events


def test_expired_probe_lease_lets_another_instance_probe(make_storage, clock):
    first = make_breaker(make_storage(), clock, probe_lease_s=10)
    second = make_breaker(make_storage(), clock, probe_lease_s=10)
    trip(first)
    clock.advance(RESET_S)
    assert first.storage.begin_probe("crashed-instance", clock.time(), RESET_S, 10)
    with pytest.raises(BreakerOpenError) as info:
        second.call(lambda: "x")
    assert info.value.retry_after_s == pytest.approx(10)
    clock.advance(10)
    assert second.call(lambda: "recovered") == "recovered"
    assert first.state == CLOSED
    # The crashed prober's late verdict is ignored.
    assert first.storage.end_probe("crashed-instance", False, clock.time()) is None
    assert first.state == CLOSED


def test_state_opened_by_one_instance_is_seen_by_another(make_storage, clock):
    first, second = make_breaker(make_storage(), clock), make_breaker(make_storage(), clock)
    trip(first)
    called = []
    with pytest.raises(BreakerOpenError):
        second.call(lambda: called.append(1))
    assert called == []
    assert second.events == [(CLOSED, OPEN)]
    assert second.describe()["state"] == OPEN


def test_concurrent_slow_calls_are_not_serialised(make_storage):
    breaker = SharedBreaker(make_storage(), fail_max=FAIL_MAX, reset_timeout_s=RESET_S)
    assert breaker.call(lambda: "warm") == "warm"  # connect the storage client before timing
    barrier = threading.Barrier(16)

    def slow(i: int) -> int:
        time.sleep(0.2)
        return i

    def run(i: int) -> int:
        barrier.wait(5)
        return breaker.call(slow, i)

    with ThreadPoolExecutor(16) as pool:
        started = time.perf_counter()
        results = list(pool.map(run, range(16)))
        elapsed = time.perf_counter() - started
    print(f"\n16 concurrent 0.2 s calls through one breaker: {elapsed:.3f} s")
    assert results == list(range(16))
    assert elapsed < 1.0, f"16 calls of 0.2 s took {elapsed:.2f} s: calls were serialised"


def test_plain_pybreaker_can_use_the_storage(make_storage):
    storage = make_storage()
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=60, state_storage=storage)
    for _ in range(2):
        with pytest.raises(KISServerError):
            breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert storage.state == OPEN
    assert storage.opened_at is not None
    assert abs(storage.opened_at.timestamp() - time.time()) < 60
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(lambda: "x")
    breaker.close()
    assert storage.state == CLOSED
    assert breaker.call(lambda: "x") == "x"


def test_storage_outage_lets_calls_through(clock):
    dead = RedisBreakerStorage(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), "nowhere")
    breaker = make_breaker(dead, clock, fail_max=1)
    assert breaker.call(lambda: "answered") == "answered"
    with pytest.raises(KISServerError):
        breaker.call(fail)
    assert breaker.state == CLOSED
