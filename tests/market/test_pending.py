"""PendingSymbols against the real Redis: dedupe, exclusive claims (threads and processes), leases."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter

import pytest

from shared.market.pending import PendingSymbols

SYMBOLS = [f"{i:06d}" for i in range(200)]


def claim_until_empty(redis_url: str, prefix: str, owner: str, batch: int) -> list[str]:
    """Claim batches until nothing is left (leases are long, so nothing comes back)."""
    import redis

    pend = PendingSymbols(redis.Redis.from_url(redis_url), "quote", prefix=prefix, lease_s=60)
    got: list[str] = []
    while True:
        batch_got = pend.claim(batch, owner)
        if not batch_got:
            return got
        got += batch_got


def test_a_symbol_wanted_by_many_adders_is_pending_once(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=5)
    added: list[int] = []
    lock = threading.Lock()

    def adder(i):
        n = pend.add(SYMBOLS[i * 10: i * 10 + 50])  # heavy overlap between adders
        with lock:
            added.append(n)

    threads = [threading.Thread(target=adder, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    distinct = len(set(SYMBOLS[: 15 * 10 + 50]))
    assert sum(added) == distinct
    assert pend.size() == distinct
    assert pend.add(["000000", "000001"]) == 0


def test_claims_are_oldest_first_and_bounded(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "daily", prefix=redis_prefix, lease_s=5)
    for s in ("000003", "000001", "000002"):
        pend.add([s])
    assert pend.claim(2, "a") == ["000003", "000001"]
    assert pend.claim(5, "b") == ["000002"]
    assert pend.claim(5, "c") == []
    assert pend.size() == 3  # claimed symbols stay pending until completed
    assert pend.in_flight() == 3


def test_concurrent_claimers_never_share_a_symbol(redis_url, redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=60)
    assert pend.add(SYMBOLS) == 200
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        remote = pool.starmap_async(claim_until_empty,
                                    [(redis_url, redis_prefix, f"proc{p}", 7) for p in range(2)])
        local: list[list[str]] = []
        lock = threading.Lock()

        def claimer(i):
            got = claim_until_empty(redis_url, redis_prefix, f"thread{i}", 3)
            with lock:
                local.append(got)

        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        per_process = remote.get(timeout=60)
    every = [s for got in local + per_process for s in got]
    counts = Counter(every)
    assert sorted(counts) == SYMBOLS
    assert max(counts.values()) == 1


def test_expired_lease_is_claimed_again_and_the_stale_owner_cannot_complete(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=0.3)
    pend.add(["005930", "000660"])
    assert sorted(pend.claim(10, "crashed")) == ["000660", "005930"]
    assert pend.claim(10, "second") == []  # leased
    time.sleep(0.4)
    assert sorted(pend.claim(10, "second")) == ["000660", "005930"]
    assert pend.complete(["005930", "000660"], "crashed") == 0
    assert pend.size() == 2
    assert pend.complete(["005930"], "second") == 1
    assert pend.size() == 1
    assert pend.release(["000660"], "crashed") == 0
    assert pend.claim(10, "third") == []  # still leased to "second"


def test_a_late_owner_may_complete_when_nobody_reclaimed(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=0.2)
    pend.add(["005930"])
    pend.claim(1, "slow")
    time.sleep(0.3)
    assert pend.complete(["005930"], "slow") == 1
    assert pend.size() == 0


def test_release_keeps_symbols_pending_for_the_next_claim(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "info", prefix=redis_prefix, lease_s=30)
    pend.add(["005930", "000660", "035420"])
    got = pend.claim(3, "a")
    assert sorted(got) == ["000660", "005930", "035420"]
    assert pend.complete(got[:1], "a") == 1
    assert pend.release(got[1:], "a") == 2
    assert pend.claim(5, "b") == got[1:]


def test_failures_are_recorded_for_waiters_and_cleared_by_a_new_request(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=30)
    pend.add(["005930", "000660"])
    pend.claim(2, "a")
    assert pend.fail(["005930"], "b", "not mine") == 0
    assert pend.fail(["005930"], "a", "KIS error EGW00201") == 1
    assert pend.failures(["005930", "000660", "999999"]) == {"005930": "KIS error EGW00201"}
    assert pend.size() == 1
    assert pend.add(["005930"]) == 1  # asked again: pending again, the old failure no longer applies
    assert pend.failures(["005930"]) == {}


def test_oldest_age_follows_redis_time(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "index", prefix=redis_prefix, lease_s=5)
    assert pend.oldest_age_s() == 0.0
    pend.add(["0001"])
    time.sleep(0.2)
    pend.add(["1001"])
    assert pend.oldest_age_s() == pytest.approx(0.2, abs=0.15)


def test_empty_inputs_do_nothing(redis_client, redis_prefix):
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=5)
    assert pend.add([]) == 0
    assert pend.claim(0, "a") == []
    assert pend.complete([], "a") == 0
    assert pend.failures([]) == {}


def test_claims_serve_the_reader_with_the_most_time_left_first(redis_client, redis_prefix):
    # Under overload a fetch takes a while to come back: the reader leaving soonest would have answered stale
    # and gone by then, the one with the most time left is still there to get the fresh value.
    pend = PendingSymbols(redis_client, "quote", prefix=redis_prefix, lease_s=5, idle_s=60)
    pend.admit(["005930"], caller="a", wait_s=0.5)
    pend.admit(["000660"], caller="b", wait_s=3.0)
    pend.admit(["035420"], caller="c", wait_s=1.5)
    pend.add(["051910"])  # nobody waits: after every waited-for symbol
    assert pend.claim(1, "d") == ["000660"]
    assert pend.claim(3, "d") == ["035420", "005930", "051910"]
