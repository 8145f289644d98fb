"""One behaviour suite for every IdempotencyStore: memory, Redis (real server), Firestore (real emulator)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.backends import idempotency_store_from_settings as store_from_settings
from shared.clock import FakeClock
from shared.config import load_settings
from shared.orders.idempotency import (
    DONE,
    IN_PROGRESS,
    RECORD_TTL_S,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    record_id,
)


@pytest.fixture(params=["memory", "redis", "firestore"])
def backend(request):
    clock = FakeClock()
    if request.param == "memory":
        return MemoryIdempotencyStore(clock), clock
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return RedisIdempotencyStore(request.getfixturevalue("redis_client"), prefix=prefix, clock=clock), clock
    from shared.orders.firestore_store import FirestoreIdempotencyStore

    client = request.getfixturevalue("firestore_client")
    import time

    clock = FakeClock(time.time())  # Firestore stores expires_at as a real timestamp
    return FirestoreIdempotencyStore(client, collection="idem_test", clock=clock), clock


def test_first_claim_wins_and_repeats_see_its_record(backend):
    store, _ = backend
    first = store.claim("caller:k1", "fp-a", "owner-1")
    again = store.claim("caller:k1", "fp-b", "owner-2")
    assert first.won and first.record.state == IN_PROGRESS
    assert not again.won
    assert again.record.owner == "owner-1" and again.record.fingerprint == "fp-a"


def test_finish_stores_the_answer_for_repeats_and_only_the_owner_may_settle(backend):
    store, _ = backend
    store.claim("c:k", "fp", "owner-1")
    body = {"outcome": "accepted", "order": {"symbol": "005930", "name": "삼성전자"}, "n": [1, 2]}
    assert not store.finish("c:k", "intruder", 200, {"outcome": "forged"})
    assert not store.release("c:k", "intruder")
    assert store.finish("c:k", "owner-1", 200, body)
    rec = store.get("c:k")
    assert rec.state == DONE and rec.status == 200 and rec.body == body
    assert not store.finish("c:k", "owner-1", 500, {})  # a done record never changes
    assert not store.release("c:k", "owner-1")
    assert store.claim("c:k", "fp", "owner-3").record.body == body


def test_release_frees_the_key_for_a_new_claim(backend):
    store, _ = backend
    store.claim("c:k", "fp", "owner-1")
    assert store.release("c:k", "owner-1")
    assert store.get("c:k") is None
    assert store.claim("c:k", "fp", "owner-2").won


def test_keys_are_independent(backend):
    store, _ = backend
    assert store.claim("a:k", "fp", "o1").won
    assert store.claim("b:k", "fp", "o2").won
    assert store.get("never") is None


def test_records_expire_after_a_day(backend):
    store, clock = backend
    if isinstance(store, RedisIdempotencyStore):
        pytest.skip("Redis expiry is the server's TTL: checked in test_redis_record_has_a_day_ttl")
    store.claim("c:k", "fp", "owner-1")
    clock.advance(RECORD_TTL_S - 5)
    assert store.get("c:k") is not None
    clock.advance(10)
    assert store.get("c:k") is None
    assert store.claim("c:k", "fp", "owner-2").won  # an expired record is replaced


def test_concurrent_claims_have_exactly_one_winner(backend):
    store, _ = backend
    barrier = threading.Barrier(20)

    def claim(i: int) -> bool:
        barrier.wait(timeout=10)
        return store.claim("c:race", "fp", f"owner-{i}").won

    with ThreadPoolExecutor(20) as pool:
        wins = list(pool.map(claim, range(20)))
    assert wins.count(True) == 1


def test_redis_record_has_a_day_ttl(redis_client, redis_prefix):
    store = RedisIdempotencyStore(redis_client, prefix=redis_prefix)
    store.claim("c:k", "fp", "o")
    ttl = redis_client.ttl(f"{redis_prefix}:idem:{record_id('c:k')}")
    assert RECORD_TTL_S - 10 <= ttl <= RECORD_TTL_S
    store.finish("c:k", "o", 200, {"a": 1})
    assert redis_client.ttl(f"{redis_prefix}:idem:{record_id('c:k')}") > RECORD_TTL_S - 10  # KEEPTTL


def test_store_is_chosen_by_uri(redis_client, redis_prefix):
    memory = store_from_settings(load_settings({}, idempotency_store="memory://"))
    redis_store = store_from_settings(load_settings({}, idempotency_store="redis://", redis_prefix=redis_prefix),
                                      redis_client=redis_client)
    assert isinstance(memory, MemoryIdempotencyStore)
    assert isinstance(redis_store, RedisIdempotencyStore)


def test_firestore_store_from_uri_uses_the_collection(firestore_client):
    from shared.orders.firestore_store import FirestoreIdempotencyStore

    name = f"orders_{uuid.uuid4().hex[:6]}"
    store = store_from_settings(load_settings({}, idempotency_store=f"firestore://{name}"),
                                firestore_client=firestore_client)
    assert isinstance(store, FirestoreIdempotencyStore)
    store.claim("c:k", "fp", "o")
    docs = list(firestore_client.collection(name).stream())
    assert [d.id for d in docs] == [record_id("c:k")]
    assert docs[0].to_dict()["expires_at"] is not None  # the field a Firestore TTL policy deletes on
