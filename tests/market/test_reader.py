"""The async reader against the KIS simulator over real HTTP and the real local Redis."""

import asyncio
import threading
import time

from shared.market.reader import AsyncReader, reader_for

MULTI = "FHKST11300006"


def multi_calls(sim):
    return sim.stats()["calls"].get(MULTI, 0)


def run(coro):
    return asyncio.run(coro)


def test_cold_miss_becomes_fresh_then_served_from_cache(make_gateway, sim):
    gw = make_gateway()

    async def go():
        reader = await reader_for(gw).start()
        first = await reader.get("quote", ["005930", "000660", "035420"], 3)
        calls = multi_calls(sim)
        again = await reader.get("quote", ["035420", "005930"], 3)
        return first, calls, again

    first, calls, again = run(go())
    assert [r.status for r in first.values()] == ["fresh"] * 3 and first["005930"].value["price"] > 0
    assert calls == 1  # three symbols, one multi-quote call
    assert list(again) == ["035420", "005930"] and all(r.status == "fresh" for r in again.values())
    assert multi_calls(sim) == calls


def test_unknown_symbol_and_deadline_answers(make_gateway, sim):
    gw = make_gateway()

    async def go():
        reader = reader_for(gw)
        mixed = await reader.get("quote", ["005930", "999999"], 3)
        sim.set_faults(latency_ms=1500)
        started = time.monotonic()
        slow = await reader.get("quote", ["000270"], 0.3)
        return mixed, slow, time.monotonic() - started

    mixed, slow, took = run(go())
    sim.set_faults(latency_ms=0)
    assert mixed["005930"].status == "fresh"
    assert mixed["999999"].status == "error" and "unknown" in mixed["999999"].reason
    assert slow["000270"].status == "pending" and took < 1.5


def test_a_thousand_waiters_hold_no_thread_each(make_gateway, sim):
    gw = make_gateway(REQUEST_DEADLINE_S="20")
    codes = [s["code"] for s in sim.symbols()[200:240]]
    sim.set_faults(latency_ms=300)  # every waiter is still waiting when the next ones arrive
    peak = []

    async def go():
        reader = await reader_for(gw).start()

        async def watch():
            while True:
                peak.append(threading.active_count())
                await asyncio.sleep(0.05)

        watcher = asyncio.get_running_loop().create_task(watch())
        got = await asyncio.gather(*(reader.get("quote", [codes[i % 40]], 20) for i in range(1000)))
        watcher.cancel()
        return got, reader.listener.waiting()

    got, left = run(go())
    sim.set_faults(latency_ms=0)
    assert len(got) == 1000 and all(next(iter(r.values())).status == "fresh" for r in got)
    assert max(peak) < 100  # threads: the worker pools and the drains, not one per waiter
    assert left == 0
    assert multi_calls(sim) < 40  # a thousand requests over 40 symbols: batched calls, not one per request


def test_refresh_ahead_keeps_steady_readers_from_waiting(make_gateway, sim):
    # The refresh starts 0.9 s before the copy runs out; a fetch takes the 50 ms collect window and one KIS call.
    gw = make_gateway(QUOTE_TTL_S="3")
    symbol = "005930"

    async def go():
        reader = reader_for(gw)
        await reader.get("quote", [symbol], 3)
        first = multi_calls(sim)
        statuses = []
        stop = time.monotonic() + 6.5  # two refreshes of steady reading
        while time.monotonic() < stop:
            statuses.append((await reader.get("quote", [symbol], 3))[symbol].status)
            await asyncio.sleep(0.02)
        return first, statuses

    first, statuses = run(go())
    extra = multi_calls(sim) - first
    assert set(statuses) == {"fresh"}
    # The next copy was written before the old one ran out: no read found the symbol missing and waited for it.
    assert gw.metrics.snapshot()["counters"]["read_waits_total"]["kind=quote"] == 1  # the first, cold read
    # Still at most one fetch per freshness window (each refetch starts a new window).
    assert 1 <= extra <= 3


def test_refresh_ahead_marks_a_symbol_pending_once_per_copy(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="2", GATEWAY_COLLECT_WINDOW_MS="300")

    async def go():
        reader = reader_for(gw)
        await reader.get("quote", ["000660"], 3)
        before = multi_calls(sim)
        await asyncio.sleep(1.5)  # inside the last part of the freshness window
        await asyncio.gather(*(reader.get("quote", ["000660"], 3) for _ in range(50)))
        await asyncio.sleep(1.2)
        return before

    before = run(go())
    assert multi_calls(sim) - before == 1
    assert gw.metrics.snapshot()["counters"]["refresh_ahead_total"]["kind=quote"] == 1


def _cloud_key(make_gateway):
    """A cloud-mode gateway, one market:read key of it, a request presenting the key, and the list of the key
    store's reads (`count_reads(checks)` starts counting them)."""
    from shared.backends import api_keys_from_settings

    gw = make_gateway(GATEWAY_MODE="cloud", IDEMPOTENCY_STORE="redis://", GATEWAY_API_KEY_PEPPER="test-pepper")
    keys = api_keys_from_settings(gw.settings, redis_client=gw.redis)
    key, record = keys.create("market:read", "test")
    reads: list[str] = []

    class Req:
        headers = {"X-API-Key": key}

    def count_reads(checks):
        store_get = checks.control.keys.store.get

        def counting_get(key_id):
            reads.append(key_id)
            return store_get(key_id)

        checks.control.keys.store.get = counting_get

    return gw, keys, key, record, Req, reads, count_reads


def test_revocation_notice_reaches_the_cached_keys(make_gateway):
    from shared.api.access_async import async_access_for

    gw, keys, key, record, Req, reads, count_reads = _cloud_key(make_gateway)

    async def go():
        reader: AsyncReader = await reader_for(gw).start()
        checks = async_access_for(gw, reader)
        count_reads(checks)
        first = await checks.identify(Req, "market:read")
        second = await checks.identify(Req, "market:read")
        await asyncio.to_thread(keys.revoke, record.key_id)
        started = time.monotonic()
        while checks.keys.get(key) is not None and time.monotonic() - started < 3:
            await asyncio.sleep(0.01)
        third = await checks.identify(Req, "market:read")
        return first, second, third, time.monotonic() - started

    first, second, third, took = run(go())
    assert first is not None and second is not None and first.id == f"key:{record.key_id}"
    assert len(reads) == 2  # verified once, then from the cache; the third read finds the revoked record
    assert third is None and took < 2


def test_a_slow_drain_queue_does_not_eat_the_callers_deadline(make_gateway, sim):
    gw = make_gateway()
    queue = gw.drain.trigger

    class SlowQueue:
        """A queue whose enqueue RPC answers late (a loaded Cloud Tasks endpoint)."""

        def request_drain(self, kind, call_class, slot):
            time.sleep(3.0)
            return queue.request_drain(kind, call_class, slot)

    gw.drain.trigger = SlowQueue()

    async def go():
        reader = reader_for(gw)
        started = time.monotonic()
        got = await reader.get("quote", ["005380"], 0.4)
        return got, time.monotonic() - started

    got, took = run(go())
    # Answered at its deadline (the symbol still being fetched), not after the enqueue.
    assert got["005380"].status in ("pending", "fresh")
    assert took < 2.5


def test_a_cached_key_is_checked_again_in_the_background_before_it_expires(make_gateway):
    from shared.api import access_async
    from shared.api.access_async import async_access_for

    gw, keys, key, record, Req, reads, count_reads = _cloud_key(make_gateway)

    async def go():
        reader: AsyncReader = await reader_for(gw).start()
        checks = async_access_for(gw, reader)
        checks.keys.ttl_s = 1.0
        count_reads(checks)
        # Ten requests at once, nothing cached: one store read for all of them.
        first = await asyncio.gather(*(checks.identify(Req, "market:read") for _ in range(10)))
        after_first = len(reads)
        await asyncio.sleep(1.0 - 1.0 * access_async.API_KEY_RECHECK_SHARE / 2)  # in the last part of its life
        due = await asyncio.gather(*(checks.identify(Req, "market:read") for _ in range(10)))
        while len(reads) == after_first:  # the re-check runs in the background
            await asyncio.sleep(0.01)
        await asyncio.to_thread(keys.revoke, record.key_id)
        await asyncio.sleep(1.2)  # even had the notice been lost, the entry's life is over
        checks.keys.revoke("nothing")  # (no effect on other keys)
        last = await checks.identify(Req, "market:read")
        return first, after_first, due, last

    first, after_first, due, last = run(go())
    assert all(p is not None and p.id == f"key:{record.key_id}" for p in first + due)
    assert after_first == 1  # one store read for ten requests of one key
    assert len(reads) >= 2  # re-checked before the cached record expired (the due requests did not wait for it)
    assert last is None


def test_a_failed_background_step_is_logged_not_lost(make_gateway, caplog):
    gw = make_gateway()

    async def go():
        reader = reader_for(gw)

        async def send_fails():
            raise RuntimeError("the queue could not be reached")

        reader._spawn(send_fails())
        for _ in range(100):
            if not reader._tasks:
                break
            await asyncio.sleep(0.01)

    run(go())
    assert "the queue could not be reached" in caplog.text


def test_a_copy_written_between_the_look_and_the_admission_is_answered_not_fetched_again(make_gateway, sim):
    gw = make_gateway()

    async def go():
        reader = await reader_for(gw).start()
        await reader.get("quote", ["000660"], 3)
        before = multi_calls(sim)
        # The caller's look found nothing (as a storm's request whose look came before the drain's write).
        looked_before_the_write = [None, None]
        again = await reader.get("quote", ["000660"], 3, raw=looked_before_the_write)
        return before, again, reader.drain.pending["quote"].size()

    before, again, pending = run(go())
    assert again["000660"].status == "fresh" and again["000660"].value["price"] > 0
    assert multi_calls(sim) == before  # answered from the copy the admission found, not fetched again
    assert pending == 0


def _read_near_expiry_with_pending(gw, pending: list[str]):
    """Reads 000660 in the last part of its freshness window while `pending` symbols wait to be fetched: (its
    answer, how many refreshes ahead were asked for)."""

    async def go():
        reader = reader_for(gw)
        await reader.get("quote", ["000660"], 3)
        await asyncio.sleep(1.5)  # inside the last part of the freshness window
        reader.drain.pending["quote"].add(pending)
        held = await reader.get("quote", ["000660"], 3)
        await asyncio.sleep(0.1)
        counters = gw.metrics.snapshot()["counters"].get("refresh_ahead_total", {})
        return held, counters.get("kind=quote", 0)

    return run(go())


def test_refresh_ahead_waits_while_misses_are_pending(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="2")
    # Misses of others, not yet fetched, filling the next batch: they come first.
    others = [c["code"] for c in sim.symbols() if c["code"] != "000660"]
    held, asked = _read_near_expiry_with_pending(gw, others[:gw.drain.kinds["quote"].batch])
    assert held["000660"].status == "fresh"
    assert asked == 0


def test_refresh_ahead_shares_a_batch_with_a_few_pending_symbols(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="2")
    # Another hot symbol's refresh or a miss: the next batch has room for both.
    held, asked = _read_near_expiry_with_pending(gw, ["005380"])
    assert held["000660"].status == "fresh"
    assert asked == 1


def test_a_lost_notice_costs_latency_not_the_answer(make_gateway, sim):
    gw = make_gateway()
    code = sim.symbols()[250]["code"]

    async def go():
        reader = await reader_for(gw).start()
        reader.listener.on_notice = None  # every write's notice is lost to this process
        t = time.monotonic()
        got = await reader.get("quote", [code], 5)
        return got, time.monotonic() - t

    got, took = run(go())
    assert got[code].status == "fresh"
    assert took < 3  # found by the reader's own re-read of waited-for symbols (every half second), not the deadline


def test_waiters_do_not_each_poll_redis(make_gateway, sim):
    """A thousand waiting requests: each looks once after registering; later looks are one read for all."""
    gw = make_gateway(REQUEST_DEADLINE_S="20")
    codes = [s["code"] for s in sim.symbols()[300:340]]
    sim.set_faults(latency_ms=1500)  # every waiter waits through several half-second slices

    async def go():
        reader = await reader_for(gw).start()
        reads = []
        real = reader._read

        async def counted(kind, order):
            reads.append(len(order))
            return await real(kind, order)

        reader._read = counted
        got = await asyncio.gather(*(reader.get("quote", [codes[i % 40]], 20) for i in range(1000)))
        return got, reads

    try:
        got, reads = run(go())
    finally:
        sim.set_faults(latency_ms=0)
    assert all(next(iter(r.values())).status == "fresh" for r in got)
    # 1,000 first looks, then a few shared reads and deliveries (each waiter polling would be thousands).
    assert len(reads) < 1000 + 60, len(reads)


def test_waiters_are_woken_only_by_what_can_settle_them(make_gateway, sim, monkeypatch):
    """While KIS is slow, the periodic look for every waiter finds no fresh copy and no failure: the thousand
    waiting requests are not woken for it (each wake-up was a step of the event loop, a thousand at once)."""
    from shared.market import reader as reader_mod

    gw = make_gateway(REQUEST_DEADLINE_S="20")
    codes = [s["code"] for s in sim.symbols()[340:380]]
    idle_wakeups = []
    real_deliver = reader_mod._Waiter.deliver

    def counted(self, found):
        if not any(s in self.wanted and (r is not None or (e is not None and e.fresh)) for s, (e, r) in found.items()):
            idle_wakeups.append(1)
        return real_deliver(self, found)

    monkeypatch.setattr(reader_mod._Waiter, "deliver", counted)
    sim.set_faults(latency_ms=1500)  # several half-second looks before the answers

    async def go():
        reader = await reader_for(gw).start()
        return await asyncio.gather(*(reader.get("quote", [codes[i % 40]], 20) for i in range(1000)))

    try:
        got = run(go())
    finally:
        sim.set_faults(latency_ms=0)
    assert all(next(iter(r.values())).status == "fresh" for r in got)
    assert idle_wakeups == []


def test_the_drain_is_asked_for_before_the_admission_answers(make_gateway, sim):
    """Under a storm the admission's answer comes back behind every other request's steps: the drain is asked
    for at the miss, not after it."""
    gw = make_gateway()
    queue = gw.drain.trigger
    asked: list[float] = []

    class RecordingQueue:
        def request_drain(self, kind, call_class, slot):
            asked.append(time.monotonic())
            return queue.request_drain(kind, call_class, slot)

    gw.drain.trigger = RecordingQueue()

    async def go():
        reader = reader_for(gw)
        admit = reader._admit_missing
        admitted: list[float] = []

        async def slow_admission(*args, **kwargs):
            await asyncio.sleep(0.5)  # its answer waits behind a storm's other requests
            out = await admit(*args, **kwargs)
            admitted.append(time.monotonic())
            return out

        reader._admit_missing = slow_admission
        got = await reader.get("quote", ["000270"], 5)
        return got, admitted

    got, admitted = run(go())
    assert got["000270"].status == "fresh"  # and nothing is lost when the drain came before the admission
    assert asked and admitted and asked[0] < admitted[0] - 0.3


async def _timed_refusing(reader):
    """The reader's breaker answer and how long it took."""
    t = time.monotonic()
    value = await reader._refusing()
    return value, time.monotonic() - t


def test_misses_do_not_wait_for_a_breaker_read_while_the_last_one_is_recent(make_gateway):
    """The breaker's state read within BREAKER_STALE_S is answered with while the next read runs; an older
    "open" (or none) is waited for."""
    from shared.market.reader import BREAKER_MEMO_S, BREAKER_STALE_S

    gw = make_gateway()
    reads: list[float] = []

    def slow_refusing():  # the first read finds it closed, every later one open
        reads.append(time.monotonic())
        time.sleep(0.3)
        return len(reads) > 1

    gw.breaker.refusing = slow_refusing

    async def go():
        reader = await reader_for(gw).start()
        first = await _timed_refusing(reader)  # nothing read yet: waits for the read
        await asyncio.sleep(BREAKER_MEMO_S + 0.05)
        second = await _timed_refusing(reader)  # recent: the last value at once, a read starts
        await asyncio.sleep(0.45)  # that read has come back (open)
        third = await _timed_refusing(reader)
        await asyncio.sleep(BREAKER_STALE_S + 0.1)
        fourth = await _timed_refusing(reader)  # too old: waited for
        return first, second, third, fourth

    first, second, third, fourth = run(go())
    assert first[0] is False and first[1] >= 0.29
    assert second[0] is False and second[1] < 0.1
    assert third[0] is True
    assert fourth[0] is True and fourth[1] >= 0.29
    assert len(reads) == 4


def test_an_old_closed_breaker_read_is_answered_with_while_the_next_read_runs(make_gateway):
    """After a quiet spell the first miss does not wait for the breaker's read when the last one found it closed
    (the gate still checks every KIS call); once a read found it open, an old one is waited for."""
    from shared.market.reader import BREAKER_STALE_S

    gw = make_gateway()
    answers = [False, True, True]

    def slow_refusing():
        time.sleep(0.3)
        return answers.pop(0)

    gw.breaker.refusing = slow_refusing

    async def go():
        reader = await reader_for(gw).start()
        await _timed_refusing(reader)  # closed, waited for (nothing read before)
        await asyncio.sleep(BREAKER_STALE_S + 0.1)
        old_closed = await _timed_refusing(reader)  # old but closed: at once; a read starts (it finds it open)
        await asyncio.sleep(0.35 + BREAKER_STALE_S + 0.1)
        old_open = await _timed_refusing(reader)  # old and open: waited for
        return old_closed, old_open

    old_closed, old_open = run(go())
    assert old_closed[0] is False and old_closed[1] < 0.1
    assert old_open[0] is True and old_open[1] >= 0.29
