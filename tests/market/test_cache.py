"""DataCache against the real Redis: freshness vs last-known, round trips, pub/sub waiters, market hours."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shared.clock import FakeClock
from shared.market.cache import DataCache, _hub_for

DAY = 86400.0


class FakeMarket:
    """Open 09:00-15:30 every day of the fake epoch (day 0 starts at `base`)."""

    def __init__(self, base: float) -> None:
        self.base = base

    def _day_start(self, ts: float) -> float:
        return self.base + ((ts - self.base) // DAY) * DAY

    def is_open(self, ts: float) -> bool:
        offset = ts - self._day_start(ts)
        return 9 * 3600 <= offset < 15.5 * 3600

    def next_open(self, ts: float) -> float:
        if self.is_open(ts):
            return ts
        day = self._day_start(ts)
        today_open = day + 9 * 3600
        return today_open if ts < today_open else today_open + DAY


class CountingConnection(redis.Connection):
    """Counts writes to the socket: one per round trip (a pipeline is packed into one write)."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sends += 1
        return super().send_packed_command(command, check_health)


def test_fresh_then_last_known_with_ages(redis_client, redis_prefix):
    clock = FakeClock(1_800_000_000.4564)
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=3600, clock=clock)
    cache.put_many({"005930": {"price": 70000, "name": "삼성전자"}, "000660": {"price": 180000}})
    clock.advance(1.0)
    got = cache.get_many(["005930", "000660", "035420"])
    assert set(got) == {"005930", "000660"}
    assert got["005930"].value == {"price": 70000, "name": "삼성전자"}
    assert got["005930"].fresh
    assert got["005930"].age_s == pytest.approx(1.0)
    assert got["005930"].stored_at == 1_800_000_000.4564  # exact: callers compare it with their clock
    clock.advance(1.5)
    stale = cache.get_many(["005930"])["005930"]
    assert not stale.fresh
    assert stale.age_s == pytest.approx(2.5)
    assert stale.value["price"] == 70000


def test_fresh_copy_expires_in_redis_and_last_known_remains(redis_client, redis_prefix):
    cache = DataCache(redis_client, "index", prefix=redis_prefix, ttl_s=0.2, last_known_ttl_s=60)
    cache.put_many({"0001": {"value": 2500.5}})
    assert cache.get_many(["0001"])["0001"].fresh
    time.sleep(0.3)
    entry = cache.get_many(["0001"])["0001"]
    assert not entry.fresh
    assert entry.age_s >= 0.3
    assert redis_client.ttl(f"{redis_prefix}:cache:index:last:0001") > 50


def test_many_symbols_one_round_trip_each_way(redis_url, redis_prefix):
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    cache = DataCache(client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=60)
    symbols = [f"{i:06d}" for i in range(50)]
    client.ping()
    before = CountingConnection.sends
    cache.put_many({s: {"price": i} for i, s in enumerate(symbols)})
    assert CountingConnection.sends - before == 1
    before = CountingConnection.sends
    got = cache.get_many(symbols)
    assert CountingConnection.sends - before == 1
    assert len(got) == 50
    assert got["000049"].value == {"price": 49}


def test_values_are_compact_json(redis_client, redis_prefix):
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=60)
    cache.put_many({"005930": {"p": 1}})
    raw = redis_client.get(f"{redis_prefix}:cache:quote:fresh:005930").decode()
    assert " " not in raw
    assert raw.startswith('{"t":')


def test_three_hundred_waiters_woken_by_one_write_share_one_subscriber(redis_url, redis_prefix):
    # A bounded pool (16 for 300 waiters; it raises after 10 s when exhausted): waiters borrow a connection
    # only briefly to look, never while they wait.
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=16, timeout=10)
    client = redis.Redis(connection_pool=pool)
    cache = DataCache(client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=60)
    symbols = [f"{i:06d}" for i in range(40)]
    wants = [set(symbols[i % 30: i % 30 + 5 + i % 6]) for i in range(300)]
    results: dict[int, set[str]] = {}
    lock = threading.Lock()

    def waiter(i):
        got = cache.wait_for(wants[i], timeout_s=20)
        with lock:
            results[i] = got

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    stop = time.monotonic() + 15
    while cache.waiters() < 300 and time.monotonic() < stop:
        time.sleep(0.02)
    assert cache.waiters() == 300
    assert client.pubsub_numsub(cache.channel)[0][1] == 1
    started = time.monotonic()
    cache.put_many({s: {"price": 1} for s in symbols})
    for t in threads:
        t.join(timeout=20)
    woke_in = time.monotonic() - started  # a timed-out waiter would also find its symbols, but only at 20 s
    assert len(results) == 300
    assert all(results[i] == wants[i] for i in range(300))
    assert woke_in < 10  # well before the 20 s timeout: woken, not timed out
    assert cache.waiters() == 0


def test_wait_for_returns_at_once_for_fresh_symbols_and_partial_on_timeout(redis_client, redis_prefix):
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=60)
    cache.put_many({"005930": {"price": 1}})
    assert cache.wait_for(["005930"], timeout_s=5) == {"005930"}
    assert cache.wait_for(["005930", "000660"], timeout_s=0.2) == {"005930"}
    assert cache.wait_for([], timeout_s=5) == set()


def test_a_write_from_another_thread_wakes_a_waiter(redis_client, redis_prefix):
    cache = DataCache(redis_client, "daily", prefix=redis_prefix, ttl_s=60, last_known_ttl_s=600)
    other = DataCache(redis.Redis.from_url("redis://127.0.0.1:6379/0"), "daily", prefix=redis_prefix,
                      ttl_s=60, last_known_ttl_s=600)
    timer = threading.Timer(0.2, lambda: other.put_many({"005930": {"bars": []}}))
    timer.start()
    try:
        assert cache.wait_for(["005930"], timeout_s=10) == {"005930"}
    finally:
        timer.cancel()


def test_one_hub_per_process_and_server(redis_client, redis_url):
    assert _hub_for(redis_client) is _hub_for(redis.Redis.from_url(redis_url))


def test_closed_market_keeps_values_fresh_until_next_open(redis_client, redis_prefix):
    base = 1_800_000_000.0 - (1_800_000_000.0 % DAY)
    clock = FakeClock(base + 20 * 3600)  # 20:00, closed
    market = FakeMarket(base)
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=7 * 86400,
                      market=market, clock=clock)
    cache.put_many({"005930": {"price": 1}})
    clock.advance(10 * 3600)  # 06:00 next day: still closed, no newer price
    assert cache.get_many(["005930"])["005930"].fresh
    pttl_s = redis_client.pttl(f"{redis_prefix}:cache:quote:fresh:005930") / 1000
    assert 12 * 3600 < pttl_s <= 13 * 3600  # the fresh copy itself lives until the open
    clock.advance(3 * 3600 + 1)  # 09:00:01, open
    assert not cache.get_many(["005930"])["005930"].fresh


def test_value_stored_just_before_close_stays_fresh_overnight(redis_client, redis_prefix):
    base = 1_800_000_000.0 - (1_800_000_000.0 % DAY)
    clock = FakeClock(base + 15.5 * 3600 - 1)  # 15:29:59, open
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=7 * 86400,
                      market=FakeMarket(base), clock=clock)
    cache.put_many({"005930": {"price": 1}})
    clock.advance(5 * 3600)
    assert cache.get_many(["005930"])["005930"].fresh


def test_value_from_mid_session_is_stale_after_close(redis_client, redis_prefix):
    base = 1_800_000_000.0 - (1_800_000_000.0 % DAY)
    clock = FakeClock(base + 10 * 3600)  # 10:00, open
    cache = DataCache(redis_client, "quote", prefix=redis_prefix, ttl_s=2.0, last_known_ttl_s=7 * 86400,
                      market=FakeMarket(base), clock=clock)
    cache.put_many({"005930": {"price": 1}})
    clock.advance(3.0)
    assert not cache.get_many(["005930"])["005930"].fresh  # open: TTL applies
    clock.advance(10 * 3600)
    assert not cache.get_many(["005930"])["005930"].fresh  # the close moved the price since
