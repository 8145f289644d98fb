"""The breaker across processes (Redis), and building it from settings."""

from __future__ import annotations

import contextlib
import multiprocessing
import time

import pytest
import redis

from shared.backends import breaker_from_settings as from_settings
from shared.config import Settings, load_settings
from shared.kis.errors import KISServerError
from shared.market.breaker import (
    CLOSED,
    OPEN,
    BreakerOpenError,
    MemoryBreakerStorage,
    RedisBreakerStorage,
    SharedBreaker,
)

SPAWN = multiprocessing.get_context("spawn")  # a clean interpreter, like another Cloud Functions instance


def _boom() -> None:
    raise KISServerError("down", http_status=503)


def _trip_in_child(redis_url: str, prefix: str, fail_max: int) -> None:
    breaker = SharedBreaker(RedisBreakerStorage(redis.Redis.from_url(redis_url), prefix), fail_max=fail_max,
                            reset_timeout_s=60)
    for _ in range(fail_max):
        with contextlib.suppress(KISServerError):
            breaker.call(_boom)


def _probe_in_child(redis_url: str, prefix: str, start) -> None:
    client = redis.Redis.from_url(redis_url)
    breaker = SharedBreaker(RedisBreakerStorage(client, prefix), fail_max=5, reset_timeout_s=60)

    def probe() -> str:
        client.incr(f"{prefix}:probe-calls")
        # In flight until every other process has been refused (however slowly it started), at most 30 s.
        deadline = time.monotonic() + 30
        while client.llen(f"{prefix}:outcomes") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        return "probe"

    assert start.wait(30)
    try:
        outcome = breaker.call(probe)
    except BreakerOpenError:
        outcome = "open"
    client.rpush(f"{prefix}:outcomes", outcome)


def test_state_opened_in_another_process_is_seen(redis_url, redis_prefix, redis_client):
    child = SPAWN.Process(target=_trip_in_child, args=(redis_url, redis_prefix, 5))
    child.start()
    child.join(60)
    assert child.exitcode == 0

    breaker = SharedBreaker(RedisBreakerStorage(redis_client, redis_prefix), fail_max=5, reset_timeout_s=60)
    assert breaker.state == OPEN
    assert breaker.failure_count == 5
    assert abs(breaker.opened_at - time.time()) < 60
    called = []
    with pytest.raises(BreakerOpenError):
        breaker.call(lambda: called.append(1))
    assert called == []


def test_exactly_one_probe_among_processes(redis_url, redis_prefix, redis_client):
    storage = RedisBreakerStorage(redis_client, redis_prefix)
    breaker = SharedBreaker(storage, fail_max=5, reset_timeout_s=60)
    for _ in range(5):
        with pytest.raises(KISServerError):
            breaker.call(_boom)
    storage.force_opened_at(time.time() - 61)  # the open period is over: the next caller anywhere probes

    start = SPAWN.Event()
    children = [SPAWN.Process(target=_probe_in_child, args=(redis_url, redis_prefix, start)) for _ in range(4)]
    for child in children:
        child.start()
    time.sleep(0.5)  # let the interpreters start before releasing them together
    start.set()
    for child in children:
        child.join(60)
        assert child.exitcode == 0

    outcomes = sorted(x.decode() for x in redis_client.lrange(f"{redis_prefix}:outcomes", 0, -1))
    assert outcomes == ["open", "open", "open", "probe"]
    assert int(redis_client.get(f"{redis_prefix}:probe-calls")) == 1
    assert breaker.state == CLOSED


def test_from_settings_picks_storage_by_uri(redis_client, redis_prefix):
    memory = from_settings(load_settings({}, breaker_store="memory://", breaker_fail_max=7))
    assert isinstance(memory.storage, MemoryBreakerStorage)
    assert (memory.fail_max, memory.reset_timeout_s) == (7, 60.0)

    settings = load_settings({}, breaker_store="redis://", redis_prefix=redis_prefix, breaker_reset_timeout_s=5)
    shared = from_settings(settings, redis=redis_client)
    assert isinstance(shared.storage, RedisBreakerStorage)
    assert shared.storage.key == f"{redis_prefix}:breaker:kis"
    assert (shared.fail_max, shared.reset_timeout_s) == (20, 5.0)

    with pytest.raises(ValueError, match="BREAKER_STORE"):
        from_settings(Settings(breaker_store="etcd://x"))


def test_from_settings_firestore_uses_the_given_client_and_collection():
    from shared.cloud.firestore_breaker import FirestoreBreakerStorage

    class FakeClient:
        def __init__(self):
            self.paths = []

        def collection(self, name):
            self.paths.append(name)
            return self

        def document(self, name):
            self.paths.append(name)
            return self

    client = FakeClient()
    breaker = from_settings(load_settings({}, breaker_store="firestore://gateway-breakers"), firestore_client=client,
                            name="kis-paper")
    assert isinstance(breaker.storage, FirestoreBreakerStorage)
    assert client.paths == ["gateway-breakers", "kis-paper"]
    client = FakeClient()
    from_settings(load_settings({}, breaker_store="firestore://"), firestore_client=client)
    assert client.paths == ["breakers", "kis"]
