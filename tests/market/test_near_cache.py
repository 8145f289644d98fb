"""The async read path's near cache: a hit answered without Redis, never past the copy's freshness, and a write
anywhere (announced on pub/sub) reaching this process's readers."""

import asyncio
import time

from shared.market.cache import CacheEntry
from shared.market.near_cache import NearCache
from shared.market.reader import reader_for


def entry(value, stored_at, fresh_until, fresh=True):
    return CacheEntry(value, stored_at, fresh, 0.0, fresh_until)


def test_served_only_while_fresh_and_while_enabled():
    near = NearCache()
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0)}, near.generation("quote"))
    assert near.get("quote", "A", 101.0) is None  # not subscribed yet: nothing kept
    near.set_enabled(True)
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0), "B": entry({"p": 2}, 90.0, 95.0, fresh=False)},
             near.generation("quote"))
    got = near.get("quote", "A", 101.5)
    assert got is not None and got.value == {"p": 1} and got.fresh and abs(got.age_s - 1.5) < 1e-9
    assert near.get("quote", "B", 101.5) is None  # a copy that was not fresh is never kept
    assert near.get("quote", "A", 102.0) is None  # its freshness ended: gone
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0)}, near.generation("quote"))
    near.set_enabled(False)  # the listener lost its connection: notices may be lost
    assert near.get("quote", "A", 101.0) is None and len(near) == 0


def test_a_write_notice_drops_the_copy_and_a_read_from_before_it_is_not_kept():
    near = NearCache()
    near.set_enabled(True)
    gen = near.generation("quote")
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0)}, gen)
    slow_reader = near.generation("quote")  # a reader reads Redis now...
    near.written("quote", ["A"])  # ...a new copy is written and announced meanwhile
    assert near.get("quote", "A", 100.5) is None
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0)}, slow_reader)  # the old copy arrives late
    assert near.get("quote", "A", 100.5) is None
    near.put("quote", {"A": entry({"p": 2}, 100.4, 102.4)}, near.generation("quote"))
    assert near.get("quote", "A", 100.5).value == {"p": 2}
    near.put("quote", {"A": entry({"p": 1}, 100.0, 102.0)}, near.generation("quote"))  # older than kept
    assert near.get("quote", "A", 100.5).value == {"p": 2}
    assert near.get("index", "A", 100.5) is None  # kinds are apart


def test_refresh_ahead_is_asked_once_per_stored_copy():
    near = NearCache()
    assert near.ahead_due("quote", "A", 100.0)
    assert not near.ahead_due("quote", "A", 100.0)
    assert near.ahead_due("quote", "A", 102.0)  # the next copy
    near.ahead_failed("quote", "A")
    assert near.ahead_due("quote", "A", 102.0)  # the ask failed: the next reader asks again


class CountingRedis:
    """Counts the commands a reader sends (pipelines count once)."""

    def __init__(self, inner):
        self._inner, self.calls = inner, 0

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name in ("mget", "get", "evalsha", "pipeline"):
            self.calls += 1
        return attr


def test_repeated_hits_cost_no_redis_round_trip_and_a_new_copy_reaches_the_reader(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="3")
    cache = gw.drain.caches["quote"]

    async def go():
        reader = await reader_for(gw).start()
        first = await reader.get("quote", ["005930"], 3)
        counting = CountingRedis(reader.redis)
        reader.redis = counting
        hits = [await reader.get("quote", ["005930"], 3) for _ in range(20)]
        calls = counting.calls
        reader.redis = counting._inner
        # A write anywhere (here: this test, as a drain of another instance would) is announced on pub/sub.
        old_until = reader.near.get("quote", "005930", time.time()).fresh_until
        value = dict(first["005930"].value, price=123456)
        cache.put_many({"005930": value})
        while reader.near.get("quote", "005930", time.time()) is not None:
            await asyncio.sleep(0.01)
        dropped_at = time.time()
        after = await reader.get("quote", ["005930"], 3)
        return first, hits, calls, after, dropped_at < old_until

    first, hits, calls, after, dropped_by_notice = asyncio.run(go())
    assert dropped_by_notice  # the notice dropped the old copy while it was still fresh
    assert first["005930"].status == "fresh"
    assert all(h["005930"].status == "fresh" and h["005930"].value == first["005930"].value for h in hits)
    # Refresh ahead may ask Redis once for this copy; the hits themselves never do.
    assert calls <= 1
    assert after["005930"].status == "fresh" and after["005930"].value["price"] == 123456


def test_refresh_ahead_starts_earlier_when_refreshes_take_longer_to_land():
    near = NearCache()
    near.set_enabled(True)
    assert near.lead_s("quote", 2.0) == 1.2  # nothing measured yet: the earliest start
    near.ahead_asked("quote", ["A"], 90.0)
    near.written("quote", ["A"], 90.05)  # a quick one: the lead falls to the minimum share of the window
    assert near.lead_s("quote", 2.0) == 0.6
    near.ahead_asked("quote", ["A"], 100.0)
    near.written("quote", ["A"], 100.5)  # that refresh took 0.5 s to be written
    assert abs(near.lead_s("quote", 2.0) - (1.5 * 0.5 + 0.1)) < 1e-9  # a margin over the slowest recent one
    near.written("quote", ["A"], 105.0)  # a later write nobody asked for ahead is not a sample
    assert abs(near.lead_s("quote", 2.0) - 0.85) < 1e-9
    near.ahead_asked("quote", ["B"], 200.0)
    near.written("quote", ["B"], 203.0)  # very slow: the lead stops at the maximum share of the window
    assert near.lead_s("quote", 2.0) == 1.2
    assert near.lead_s("index", 2.0) == 1.2  # per kind
