"""SlidingLimiter against the real Redis: exact counts, class reserves, spacing, AIMD, deadlines."""

from __future__ import annotations

import threading
import time

import pytest

from shared.clock import FakeClock
from shared.config import load_settings
from shared.market.limiter import ORDER_FOLLOW_S, Grant, RateLimitTimeout, SlidingLimiter


def make(redis_client, redis_prefix, budget, key="app1", **kw):
    own = ("clock", "burst_reports", "demand_hold_s", "always_held", "horizon_s", "unspaced")
    limiter_kw = {k: kw.pop(k) for k in own if k in kw}
    kw.setdefault("min_call_spacing_ms", 0)  # these tests look at bursts; spacing has its own test
    kw.setdefault("limiter_guard_ms", 0)  # and at the plain 1-second window; the guard band has its own test
    settings = load_settings({}, gateway_budget=budget, **kw)
    limiter = SlidingLimiter(redis_client, settings, key, prefix=redis_prefix, **limiter_kw)
    limiter.start_fresh()  # a new test prefix: no call was ever made (else the first window is held back)
    return limiter


def take_all(limiter, call_class, tries=50):
    return [g for g in (limiter.try_acquire(call_class) for _ in range(tries)) if isinstance(g, Grant)]


def test_hundred_threads_at_five_get_exactly_five(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 5)
    barrier = threading.Barrier(100)
    results: list[Grant | float] = []
    lock = threading.Lock()
    classes = ("orders", "quotes", "reference")

    def one(i):
        barrier.wait()
        got = limiter.try_acquire(classes[i % 3])
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    grants = [g for g in results if isinstance(g, Grant)]
    assert len(results) == 100
    assert len(grants) == 5
    # The orders reserve (1 of 5) is held back whatever arrives first; the rest depends on arrival order.
    assert any(g.call_class == "orders" for g in grants)
    assert all(0 < w <= 1.0 for w in results if not isinstance(w, Grant))
    assert len({g.at_us for g in grants}) == 5  # stamps are unique


def test_denied_wait_points_at_the_oldest_grant_leaving_the_window(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 3, share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    grants = take_all(limiter, "quotes", 3)
    assert len(grants) == 3
    wait = limiter.try_acquire("quotes")
    assert isinstance(wait, float)
    now_us = int(redis_client.time()[0]) * 1_000_000 + int(redis_client.time()[1])
    expected = (grants[0].at_us + 1_000_000 - now_us) / 1e6
    assert 0 < wait <= 1.0
    assert wait == pytest.approx(expected, abs=0.05)


def test_guard_band_stretches_the_window(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 2, limiter_guard_ms=200, share_orders=0.0, share_quotes=1.0,
                   share_reference=0.0)
    grants = take_all(limiter, "quotes", 2)
    assert len(grants) == 2
    wait = limiter.try_acquire("quotes")
    now_us = int(redis_client.time()[0]) * 1_000_000 + int(redis_client.time()[1])
    # The next slot frees 1.2 s after the oldest grant, not 1 s: jitter on the way to KIS has room.
    assert wait == pytest.approx((grants[0].at_us + 1_200_000 - now_us) / 1e6, abs=0.05)
    assert wait > 1.0


def test_quotes_saturating_cannot_take_the_orders_reserve(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10)  # reserves: orders 2, quotes 6, reference 2
    quotes = take_all(limiter, "quotes")
    # Reference is idle, so its reserve is borrowed; the orders reserve is always held back.
    assert len(quotes) == 8
    orders = take_all(limiter, "orders", 5)
    assert len(orders) == 2
    assert isinstance(limiter.try_acquire("reference"), float)
    assert limiter.snapshot()["last_second"] == {"total": 10, "orders": 2, "quotes": 8, "reference": 0}


def test_orders_get_through_while_quotes_are_saturated(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10)
    stop = threading.Event()
    quote_grants: list[Grant] = []

    def hammer_quotes():
        while not stop.is_set():
            got = limiter.try_acquire("quotes")
            if isinstance(got, Grant):
                quote_grants.append(got)
            else:
                time.sleep(min(got, 0.02))

    threads = [threading.Thread(target=hammer_quotes) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)  # quotes now hold every slot they may take
        orders = [limiter.acquire("orders", deadline_s=0.5) for _ in range(2)]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    assert len(orders) == 2
    assert len(quote_grants) >= 8


def test_reference_borrows_when_others_idle(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10)
    assert len(take_all(limiter, "reference")) == 8  # its own 2 + idle quotes' 6; orders' 2 held back


def test_active_class_keeps_its_reserve_from_borrowers(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10)
    assert isinstance(limiter.try_acquire("reference"), Grant)  # reference is now wanted
    assert len(take_all(limiter, "quotes")) == 6  # 10 - orders 2 - reference 2
    assert isinstance(limiter.try_acquire("reference"), Grant)
    assert isinstance(limiter.try_acquire("reference"), float)  # reserve (2) used, pool empty
    assert len(take_all(limiter, "orders", 5)) == 2


def test_minimum_spacing_between_grants(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10, min_call_spacing_ms=200)
    first = limiter.try_acquire("quotes")
    assert isinstance(first, Grant)
    wait = limiter.try_acquire("orders")
    assert isinstance(wait, float)
    assert 0 < wait <= 0.2
    second = limiter.acquire("orders", deadline_s=1.0)
    assert second.at_us - first.at_us >= 200_000


def test_burst_of_rate_limit_reports_halves_budget_once_per_second_then_recovers(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10, aimd_decrease_factor=0.5, aimd_recover_per_s=4.0)
    assert limiter.effective_budget() == 10.0
    limiter.report_rate_limited()
    assert limiter.effective_budget() == 10.0  # one report is no burst
    limiter.report_rate_limited()
    assert 5.0 <= limiter.effective_budget() < 5.5
    limiter.report_rate_limited()
    limiter.report_rate_limited()
    assert limiter.effective_budget() < 6.0  # at most one decrease per second
    # Slots follow the effective budget (reserves shrink with it).
    granted = [g for c in ("orders", "quotes", "reference") for g in take_all(limiter, c, 10)]
    assert len(granted) == 5
    time.sleep(0.4)
    assert 6.0 <= limiter.effective_budget() < 10.0  # climbing back linearly (4/s), not jumping
    time.sleep(1.0)
    assert limiter.effective_budget() == 10.0
    assert limiter.snapshot()["waits"]["decreases"] == 1


def test_aimd_is_fleet_wide(redis_client, redis_prefix):
    a = make(redis_client, redis_prefix, 10, aimd_recover_per_s=0.1)  # default decrease: by a fifth
    b = make(redis_client, redis_prefix, 10, aimd_recover_per_s=0.1)
    a.report_rate_limited()
    b.report_rate_limited()
    assert b.effective_budget() < 8.5
    assert a.effective_budget() < 8.5


def test_deadline_raises_without_sleeping_past_it(redis_client, redis_prefix):
    clock = FakeClock()
    limiter = make(redis_client, redis_prefix, 2, clock=clock,
                   share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    assert len(take_all(limiter, "quotes", 2)) == 2
    start = clock.monotonic()
    with pytest.raises(RateLimitTimeout) as info:
        limiter.acquire("quotes", deadline_s=0.3)
    assert clock.monotonic() - start <= 0.3
    assert info.value.next_wait_s > 0
    assert limiter.snapshot()["waits"]["timeouts"] == 1


def test_acquire_waits_for_the_next_slot(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 2, share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    first = take_all(limiter, "quotes", 2)
    got = limiter.acquire("quotes", deadline_s=2.0)
    assert got.at_us - first[0].at_us >= 1_000_000
    assert limiter.snapshot()["waits"]["waited"] == 1


def test_app_keys_are_limited_separately(redis_client, redis_prefix):
    a = make(redis_client, redis_prefix, 2, key="keyA", share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    b = make(redis_client, redis_prefix, 2, key="keyB", share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    assert len(take_all(a, "quotes", 5)) == 2
    assert len(take_all(b, "quotes", 5)) == 2


def test_refuses_the_app_key_itself_as_id_and_unknown_classes(redis_client, redis_prefix):
    settings = load_settings({}, kis_app_key="PSabcdefSECRET", kis_app_secret="s")
    with pytest.raises(ValueError) as info:
        SlidingLimiter(redis_client, settings, "PSabcdefSECRET", prefix=redis_prefix)
    assert "PSabcdefSECRET" not in str(info.value)
    limiter = make(redis_client, redis_prefix, 5)
    with pytest.raises(ValueError):
        limiter.try_acquire("bogus")


def test_quotes_borrow_the_orders_reserve_while_no_order_waits(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10, always_held=())  # reserves: orders 2, quotes 6, reference 2
    assert len(take_all(limiter, "quotes")) == 10  # idle orders and reference lend theirs


def test_an_arriving_order_takes_the_next_free_slot_before_quotes(redis_client, redis_prefix):
    # Spaced grants free one slot at a time, as in production.
    limiter = make(redis_client, redis_prefix, 10, always_held=(), min_call_spacing_ms=30)
    stop = threading.Event()
    quote_grants: list[Grant] = []

    def hammer_quotes():
        while not stop.is_set():
            got = limiter.try_acquire("quotes")
            if isinstance(got, Grant):
                quote_grants.append(got)
            else:
                time.sleep(min(got, 0.005))

    threads = [threading.Thread(target=hammer_quotes) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.6)  # quotes now hold every slot, the orders reserve included
        assert limiter.snapshot()["last_second"]["quotes"] == 10
        secs, micros = redis_client.time()
        asked_us = secs * 1_000_000 + micros
        assert isinstance(limiter.try_acquire("orders"), float)  # no free slot yet: the order now waits
        order = limiter.acquire("orders", deadline_s=2.0)
        time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    # Once the order asked, quotes could no longer take the orders reserve: the first slot that freed went to
    # the order, none to the four threads hammering for quotes.
    assert order.call_class == "orders" and order.at_us > asked_us
    assert [g for g in quote_grants if asked_us < g.at_us < order.at_us] == []


def _redis_now_us(redis_client):
    secs, micros = redis_client.time()
    return int(secs) * 1_000_000 + int(micros)


def test_a_slot_within_the_horizon_is_booked_at_its_exact_time(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10, min_call_spacing_ms=200, share_orders=0.0, share_quotes=1.0,
                   share_reference=0.0)
    first = limiter.try_acquire("quotes")
    assert isinstance(first, Grant) and first.delay_s == 0
    # Without a horizon the next call must wait for the spacing; with one that covers it, the slot is booked
    # now, stamped exactly one spacing after the first grant, and the caller is told how long to wait for it.
    assert isinstance(limiter.try_acquire("quotes"), float)
    booked = limiter.try_acquire("quotes", horizon_s=0.5)
    assert isinstance(booked, Grant)
    assert booked.at_us == first.at_us + 200_000
    assert 0 < booked.delay_s <= 0.2
    # The next slot is counted from the booked one: beyond the horizon it is a wait, not a grant.
    wait = limiter.try_acquire("quotes", horizon_s=0.25)
    assert isinstance(wait, float)
    assert wait == pytest.approx((first.at_us + 400_000 - _redis_now_us(redis_client)) / 1e6, abs=0.05)


def test_booked_slots_count_in_the_window(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 2, share_orders=0.0, share_quotes=1.0, share_reference=0.0)
    grants = take_all(limiter, "quotes", 2)
    assert len(grants) == 2
    # A horizon shorter than the window: the third call waits for the oldest grant to leave it.
    wait = limiter.try_acquire("quotes", horizon_s=0.3)
    assert isinstance(wait, float) and wait > 0.3


def test_acquire_with_a_horizon_returns_at_the_booked_slot_and_keeps_n_per_second(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 5, min_call_spacing_ms=100, share_orders=0.0, share_quotes=1.0,
                   share_reference=0.0, horizon_s=0.05)
    stamps: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            got = limiter.acquire("quotes", deadline_s=5.0)
            # Returned at (not before) the time it was granted for: Redis time has reached the stamp.
            assert _redis_now_us(redis_client) >= got.at_us
            with lock:
                stamps.append(got.at_us)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    stamps.sort()
    assert len(stamps) == 12
    assert all(b - a >= 100_000 for a, b in zip(stamps, stamps[1:], strict=False))  # the spacing, exactly kept
    assert all(stamps[i + 5] - stamps[i] >= 1_000_000 for i in range(len(stamps) - 5))  # never 6 in a second


def test_orders_within_their_reserve_wait_for_no_spacing_and_do_not_move_it(redis_client, redis_prefix):
    limiter = make(redis_client, redis_prefix, 10, min_call_spacing_ms=200, share_orders=0.2, share_quotes=0.8,
                   share_reference=0.0, unspaced="orders", always_held=())
    quote = limiter.try_acquire("quotes")
    assert isinstance(quote, Grant)
    # Booked just ahead, as waiting quotes do under load...
    booked = limiter.try_acquire("quotes", horizon_s=0.5)
    assert isinstance(booked, Grant) and booked.at_us == quote.at_us + 200_000
    # ...an order (reserve 2) is granted at once, not behind the booked quote's spacing.
    orders = [limiter.try_acquire("orders"), limiter.try_acquire("orders")]
    assert all(isinstance(o, Grant) and o.delay_s == 0 and o.at_us < booked.at_us for o in orders)
    # Beyond its reserve an order is spaced like everyone else; and the quotes' spacing still counts from the
    # booked quote, not from the orders' earlier stamps.
    third = limiter.try_acquire("orders")
    assert isinstance(third, float) and third > 0.2
    wait = limiter.try_acquire("quotes")
    assert isinstance(wait, float)
    assert wait == pytest.approx((booked.at_us + 200_000 - _redis_now_us(redis_client)) / 1e6, abs=0.05)


def test_a_waiting_order_holds_back_one_slot_not_its_whole_reserve(redis_client, redis_prefix):
    # Priority orders (reserve 3 of 10): an order granted, then quotes saturate: they get every other slot.
    limiter = make(redis_client, redis_prefix, 10, share_orders=0.3, share_quotes=0.5, share_reference=0.2,
                   unspaced="orders", always_held=(), demand_hold_s=0.5)
    assert isinstance(limiter.try_acquire("orders"), Grant)
    time.sleep(ORDER_FOLLOW_S + 0.05)
    assert len(take_all(limiter, "quotes")) == 9  # the order's own slot only: nothing idle is held back
    # An order arriving now finds no slot: it waits, and while it waits quotes may not take the next free one.
    assert isinstance(limiter.try_acquire("orders"), float)
    snap = limiter.snapshot()["last_second"]
    assert snap["quotes"] == 9 and snap["orders"] == 1


def test_the_order_call_that_follows_a_grant_finds_its_slot_free(redis_client, redis_prefix):
    # A balance's second page comes a KIS round trip after the first: for ORDER_FOLLOW_S after an order's grant
    # one more slot stays held (not the whole reserve of 3), so it is granted at once while quotes saturate.
    limiter = make(redis_client, redis_prefix, 10, share_orders=0.3, share_quotes=0.5, share_reference=0.2,
                   unspaced="orders", always_held=(), demand_hold_s=0.5)
    assert isinstance(limiter.try_acquire("orders"), Grant)
    assert len(take_all(limiter, "quotes")) == 8
    follow = limiter.try_acquire("orders")
    assert isinstance(follow, Grant) and follow.delay_s == 0
    snap = limiter.snapshot()["last_second"]
    assert snap["quotes"] == 8 and snap["orders"] == 2
