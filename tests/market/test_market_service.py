"""The service against the KIS simulator over real HTTP and the real local Redis."""

import math
import random
import threading
import time

import pytest

TEST_SYMBOLS = ["005930", "000660", "035420"]


def wait_until(pred, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def test_cold_miss_becomes_fresh_then_served_from_cache(make_gateway, sim):
    gw = make_gateway()
    started = time.monotonic()
    out = gw.reader.get("quote", TEST_SYMBOLS, deadline_s=3)
    assert time.monotonic() - started < 2.0
    assert {s: r.status for s, r in out.items()} == dict.fromkeys(TEST_SYMBOLS, "fresh")
    assert out["005930"].value["price"] > 0 and out["005930"].value["name"] == "삼성전자"
    calls = sim.stats()["calls"].get("FHKST11300006", 0)
    assert calls == 1  # three symbols, one multi-quote call
    again = gw.reader.get("quote", TEST_SYMBOLS)
    assert all(r.status == "fresh" for r in again.values())
    assert sim.stats()["calls"].get("FHKST11300006", 0) == calls


def test_unknown_and_mixed_symbols_are_all_answered(make_gateway):
    gw = make_gateway()
    out = gw.reader.get("quote", ["005930", "999999"], deadline_s=3)
    assert out["005930"].status == "fresh"
    assert out["999999"].status == "error" and "unknown" in out["999999"].reason


def test_every_kind_is_served(make_gateway):
    gw = make_gateway()
    assert gw.reader.get("index", ["0001", "1001"], deadline_s=3)["0001"].status == "fresh"
    daily = gw.reader.get("daily", ["005930"], deadline_s=3)["005930"]
    assert daily.status == "fresh" and len(daily.value["bars"]) == 30
    info = gw.reader.get("info", ["000660"], deadline_s=3)["000660"]
    assert info.status == "fresh" and info.value["name"]


def test_deadline_is_kept_and_nothing_is_dropped(make_gateway, sim):
    gw = make_gateway()
    sim.set_faults(latency_ms=1500)
    started = time.monotonic()
    out = gw.reader.get("quote", ["005930", "000660"], deadline_s=0.3)
    assert time.monotonic() - started < 1.2  # well before KIS's 1.5 s answer, with room for a busy machine
    assert set(out) == {"005930", "000660"} and all(r.status == "pending" for r in out.values())
    sim.set_faults(latency_ms=0)
    # The accepted symbols are fetched even though the caller has gone.
    assert wait_until(lambda: all(e.fresh for e in gw.drain.caches["quote"].get_many(["005930", "000660"]).values())
                      and len(gw.drain.caches["quote"].get_many(["005930", "000660"])) == 2)


@pytest.mark.slow
def test_200_callers_over_300_symbols_share_batches(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="3", GATEWAY_COLLECT_WINDOW_MS="100")
    universe = [s["code"] for s in sim.symbols() if len(s["code"]) == 6][:300]
    rng = random.Random(5)
    # 200 callers: the first asks for all 300 symbols (three requests of 100), the rest 25 each.
    wanted = [universe] + [rng.sample(universe, 25) for _ in range(199)]
    sim.reset_stats()
    results = [None] * len(wanted)
    barrier = threading.Barrier(len(wanted))

    def caller(i):
        barrier.wait()
        out = {}
        for k in range(0, len(wanted[i]), 100):
            # A deadline no busy machine reaches: this test is about sharing batches; speed is the benchmark's.
            out.update(gw.reader.get("quote", wanted[i][k:k + 100], deadline_s=30))
        results[i] = out

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(wanted))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stats = sim.stats()
    multi = stats["calls"].get("FHKST11300006", 0)
    # Shared batches: 300 symbols asked 5,275 times cost a few multi-quote calls, half full at worst. How full
    # each batch is depends on when requests arrive (a busy machine spreads them): the benchmark's storm
    # scenario judges fill against its target (<= 16 calls).
    assert multi <= 2 * math.ceil(300 / 20), stats["calls"]
    assert stats["violations"] == 0
    assert stats["refused"].get("EGW00201", 0) == 0
    statuses = [r.status for res in results for r in res.values()]
    assert statuses.count("fresh") / len(statuses) > 0.95


def test_kis_down_opens_breaker_serves_stale_and_recovers(make_gateway, sim):
    gw = make_gateway(BREAKER_FAIL_MAX="20", BREAKER_RESET_TIMEOUT_S="1", RETRY_ATTEMPTS="1",
                      QUOTE_TTL_S="1", GATEWAY_COLLECT_WINDOW_MS="0")
    assert gw.reader.get("quote", ["005930"], deadline_s=3)["005930"].status == "fresh"
    sim.set_faults(down=True)
    codes = [s["code"] for s in sim.symbols()[:40]]
    # Paper-style single symbol failures: each failing drain batch counts once.
    deadline = time.monotonic() + 20
    while gw.breaker.state != "open" and time.monotonic() < deadline:
        gw.reader.get("quote", codes[:1] + [random.choice(codes)], deadline_s=0.5)
        time.sleep(1.05)  # let the fresh copy of 005930 expire
        gw.drain.pending["quote"].add(codes)
        gw.drain.drain("quote", deadline_s=2)
    assert gw.breaker.state == "open"
    out = gw.reader.get("quote", ["005930"], deadline_s=0.5)["005930"]
    assert out.status == "stale" and out.age_s >= 1 and out.value["price"] > 0
    sim.set_faults(down=False)
    time.sleep(1.1)
    assert wait_until(lambda: gw.reader.get("quote", ["005930"], deadline_s=1)["005930"].status == "fresh", 10)
    assert gw.breaker.state == "closed"


def test_token_expiry_mid_run_refreshes_once(make_gateway, sim, sim_clock, redis_client, redis_prefix):
    gw = make_gateway(QUOTE_TTL_S="1")
    assert gw.reader.get("quote", ["005930"], deadline_s=3)["005930"].status == "fresh"
    issued = sim.stats()["tokens_issued"]
    sim.expire_tokens()
    sim_clock.advance(61)  # KIS allows the next issue after a minute...
    for key in redis_client.scan_iter(f"{redis_prefix}:token:*:issued"):
        redis_client.delete(key)  # ...and so does our own guard
    time.sleep(1.05)
    assert gw.reader.get("quote", ["005930"], deadline_s=3)["005930"].status == "fresh"
    assert sim.stats()["tokens_issued"] == issued + 1
    assert sim.stats()["refused"].get("EGW00123", 0) >= 1


def test_rate_limit_storm_is_absorbed(make_gateway, sim):
    gw = make_gateway(QUOTE_TTL_S="3", RETRY_ATTEMPTS="6", RETRY_TOTAL_S="10")
    sim.set_faults(reject_rate=0.5)
    codes = [s["code"] for s in sim.symbols()[:100]]
    out = gw.reader.get("quote", codes, deadline_s=8)
    sim.set_faults(reject_rate=0.0)
    assert sim.stats()["refused"].get("EGW00201", 0) > 0
    # AIMD lowered the shared budget at least once (it climbs back at 1 call/s, so on a slow machine the
    # budget may be whole again by now: count the decreases rather than read the budget afterwards)
    assert gw.limiter.snapshot()["waits"]["decreases"] > 0
    assert sum(r.status == "fresh" for r in out.values()) >= 90
    assert sim.stats()["violations"] == 0


def test_paper_keys_use_single_calls_at_one_per_second(redis_url, redis_prefix):
    from shared.config import load_settings
    from shared.gateway import build_gateway
    from shared.sim import SimConfig, SimServer

    with SimServer(SimConfig(env="paper", seed=3)) as paper:
        gw = build_gateway(load_settings({
            "KIS_ENV": "paper", "KIS_BASE_URL": paper.base_url, "KIS_APP_KEY": "PSpaper" + redis_prefix[-6:],
            "KIS_APP_SECRET": "x", "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "TASK_QUEUE": "local://",
            "MARKET_HOURS_AWARE": "false"}))
        try:
            out = gw.reader.get("quote", ["005930", "000660", "035420"], deadline_s=5)
            assert all(r.status == "fresh" for r in out.values())
            info = gw.reader.get("info", ["005930"])["005930"]
            assert info.status == "error" and "paper" in info.reason
            stats = paper.stats()
            assert stats["calls"] == {"FHKST01010100": 3}  # no multi-quote, no stock info on paper
            assert stats["refused"] == {} and stats["violations"] == 0
        finally:
            gw.close()


def test_a_failure_mid_batch_keeps_what_was_fetched(make_gateway, monkeypatch):
    from shared.kis.errors import KISServerError

    gw = make_gateway(RETRY_ATTEMPTS="1")
    real = gw.kis.get_daily_prices

    def flaky(symbol, *a, **kw):
        if symbol == "035420":  # claimed last (equal scores sort by code)
            raise KISServerError(msg_cd="EGW00001")
        return real(symbol, *a, **kw)

    monkeypatch.setattr(gw.kis, "get_daily_prices", flaky)
    gw.drain.pending["daily"].add(["005930", "000660", "035420"])
    report = gw.drain.drain("daily", deadline_s=5)
    assert report.fetched == 2 and report.failed == 1  # the two fetched before the failure are kept
    out = gw.reader.get("daily", ["005930", "000660"], deadline_s=0)
    assert out["005930"].status == "fresh" and out["000660"].status == "fresh"
    assert gw.drain.pending["daily"].failures(["035420"])["035420"] == "KIS error EGW00001"


def test_a_collect_window_ends_once_a_full_batch_is_pending(make_gateway, sim):
    """A drain that starts with a part-filled batch waits its collect window for more, but not after a full
    batch is pending (a storm's first call once waited the whole window with 20 symbols ready)."""
    gw = make_gateway(GATEWAY_COLLECT_WINDOW_MS="1000")
    codes = [s["code"] for s in sim.symbols()][:25]
    pend = gw.drain.pending["quote"]
    pend.add(codes[:3])
    done: list[float] = []
    thread = threading.Thread(target=lambda: (gw.drain.drain("quote", deadline_s=5), done.append(time.monotonic())))
    thread.start()
    time.sleep(0.2)  # inside the window
    assert not done and sim.stats()["calls"].get("FHKST11300006", 0) == 0
    full_at = time.monotonic()
    pend.add(codes[3:])
    assert wait_until(lambda: sim.stats()["calls"].get("FHKST11300006", 0) >= 1, timeout=3, step=0.01)
    # The window had 0.8 s left when the batch filled; a busy machine may take some of that to notice.
    assert time.monotonic() - full_at < 0.5
    thread.join(10)
    assert done and sim.stats()["calls"].get("FHKST11300006", 0) == 2  # 20, then the other 5 after their window
    assert pend.size() == 0


def test_a_part_filled_batch_is_topped_up_when_its_rate_grant_comes(make_gateway, sim):
    """Symbols that become pending while a part-filled multi-quote batch waits for its grant go in its call."""
    gw = make_gateway(GATEWAY_COLLECT_WINDOW_MS="0")
    codes = [s["code"] for s in sim.symbols()][:30]
    pend = gw.drain.pending["quote"]
    pend.add(codes[:3])
    claimed = pend.claim(20, "drain-1")
    assert sorted(claimed) == sorted(codes[:3])
    limiter = gw.drain.gate.limiter
    real_acquire = limiter.acquire
    asked: list[str] = []

    def acquire_while_others_queue(call_class, deadline_s=None):
        asked.append(call_class)
        if len(asked) == 1:
            pend.add(codes[3:30])  # requests arriving while the batch waits for its slot
        return real_acquire(call_class, deadline_s)

    limiter.acquire = acquire_while_others_queue
    values = gw.drain.fetch("quote", claimed, time.monotonic() + 5, "drain-1")
    assert len(claimed) == 20 and set(codes[:3]) <= set(claimed)  # topped up to a full batch
    assert set(values) == set(claimed)
    assert asked == ["quotes"]  # one grant, taken before the top-up, used by the call
    assert sim.stats()["calls"].get("FHKST11300006", 0) == 1
    assert pend.size() == 30 and pend.in_flight() == 20  # held by this drain until it settles them


def test_a_grant_taken_ahead_serves_one_request_and_is_given_up_unused(make_gateway):
    gw = make_gateway()
    gate = gw.drain.gate
    real_acquire = gate.limiter.acquire
    asked: list[str] = []

    def counted(call_class, deadline_s=None):
        asked.append(call_class)
        return real_acquire(call_class, deadline_s)

    gate.limiter.acquire = counted
    real_token = gate.tokens.get
    tokens_read_before: list[int] = []  # grants asked for when the token was read
    gate.tokens.get = lambda: (tokens_read_before.append(len(asked)), real_token())[1]
    with gate.bounded(time.monotonic() + 5):
        with gate.granted("quotes"):
            assert asked == ["quotes"] and tokens_read_before == [0]  # no token read between grant and request
            gate.acquire("quotes", "FHKST11300006")  # the request it was taken for
            assert asked == ["quotes"]
            gate.acquire("quotes", "FHKST11300006")  # another (a retry) asks for its own
            assert asked == ["quotes", "quotes"]
        with gate.granted("quotes"):
            gate.acquire("reference", "FHKST03010100")  # another class's request does not use it
            assert asked == ["quotes"] * 3 + ["reference"]
        gate.acquire("quotes", "FHKST11300006")  # outside: the unused grant is gone
        assert asked == ["quotes"] * 3 + ["reference", "quotes"]


def test_a_worker_that_finds_a_full_batch_taken_first_sends_no_part_of_it_alone(make_gateway, sim):
    """Another drain claims the full batch between this worker's look and its claim: the 5 symbols left go back
    to the pending set, to be fetched with what joins them, instead of a KIS call of their own."""
    gw = make_gateway(GATEWAY_COLLECT_WINDOW_MS="75")
    codes = [s["code"] for s in sim.symbols()][:25]
    pend = gw.drain.pending["quote"]
    pend.add(codes)
    real_claim = pend.claim
    raced: list[str] = []

    def claim_after_another(max_n, owner):
        if not raced:
            raced.extend(real_claim(20, "another-drain"))  # fetching elsewhere (its lease holds 10 s)
        return real_claim(max_n, owner)

    pend.claim = claim_after_another
    gw.drain.drain("quote", deadline_s=0.5)
    assert len(raced) == 20
    assert sim.stats()["calls"].get("FHKST11300006", 0) == 0  # no call for the 5 alone
    assert pend.size() == 25 and pend.in_flight() == 20  # the 5 are pending, claimable again
