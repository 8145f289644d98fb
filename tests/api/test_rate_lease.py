"""The inbound rate limit in leases on the async read path: shared across instances, a busy key spends most of
its requests without a Redis round trip, and no request is admitted without having been charged to the shared
limit first."""

import asyncio
import math
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shared.api.rate_lease import LEASE_MAX, LEASE_S, RENEW_MIN_SIZE, RENEW_SHARE, RateLeases
from shared.gateway import set_gateway

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")
KEY = {"X-API-Key": "test-dev-key"}


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_lease_size_grows_with_demand_and_falls_back_to_use():
    clock = Clock()
    leases = RateLeases(clock)
    assert not leases.take("k") and leases.size("k", 10_000) == 1  # a key first seen asks for one
    leases.granted("k", 1)
    assert not leases.take("k")  # its one request was the asking one
    assert leases.size("k", 10_000) == 2  # spent before it ended: doubles
    leases.granted("k", 2)
    assert leases.take("k") and not leases.take("k")
    assert leases.size("k", 10_000) == 4
    leases.granted("k", 64)
    for _ in range(9):
        assert leases.take("k")
    clock.t += LEASE_S  # the lease ends with 54 unspent: given up
    assert not leases.take("k")
    assert leases.size("k", 10_000) == 10  # what the last lease spent
    assert leases.size("k", 20) == 2  # never above LEASE_S x the key's rate
    assert leases.size("k", 5) == 1  # a slow key: one request each time, exact
    leases.granted("big", LEASE_MAX)
    while leases.take("big"):
        pass
    assert leases.size("big", 10**6) == LEASE_MAX  # never above LEASE_MAX


def test_waiting_requests_of_one_key_share_one_lease_request():
    async def go():
        leases = RateLeases()
        leases.begin("k")
        assert leases.asking("k") and not leases.asking("other")
        turn = leases.wait_turn("k")
        leases.granted("k", 4)
        leases.end("k")
        assert await turn and not leases.asking("k")
        return [leases.take("k") for _ in range(3)]

    # The asker's own, the waiter's, then the two left; nothing beyond the lease of 4.
    assert asyncio.run(go()) == [True, True, False]


def test_requests_waiting_for_a_lease_are_woken_in_turn_not_all_at_once():
    async def go():
        leases = RateLeases()
        leases.begin("k")
        line = [leases.wait_turn("k") for _ in range(10)]
        line[1].cancel()  # a request that went away meanwhile takes nothing
        leases.granted("k", 4)  # the asking request's own, and three more
        leases.end("k")
        woken = [f.result() if f.done() and not f.cancelled() else None for f in line]
        # The next lease: the one woken to ask gets 2; one more waiter gets the spare request.
        leases.begin("k")
        leases.granted("k", 2)
        leases.end("k")
        again = [f.result() if f.done() and not f.cancelled() else None for f in line]
        # A refused key: everybody still in line is woken to answer 429 itself.
        leases.begin("k")
        leases.refused("k", 1.0)
        leases.end("k")
        last = [f.result() if f.done() and not f.cancelled() else None for f in line]
        return woken, again, last

    woken, again, last = asyncio.run(go())
    assert woken == [True, None, True, True, False, None, None, None, None, None]
    assert again == [True, None, True, True, False, True, False, None, None, None]
    assert last == [True, None, True, True, False, True, False, False, False, False]


def test_a_lease_asked_while_requests_wait_in_line_covers_them():
    async def go():
        leases = RateLeases()
        leases.begin("k")
        line = [leases.wait_turn("k") for _ in range(199)]
        line[5].cancel()  # went away: not counted
        leases.granted("k", 1)  # the first request's own, nothing to spare
        leases.end("k")
        asker = line.pop(0)
        assert asker.result() is False  # woken to ask for the next lease
        first = leases.size("k", 10_000)  # for itself and the 197 still waiting, not twice the last lease
        leases.begin("k")
        leases.granted("k", first)
        leases.end("k")
        woken = [f.result() for f in line if not f.cancelled()]
        return first, woken, leases.size("slow", 50), leases.take("k")

    first, woken, slow, spare = asyncio.run(go())
    assert first == 198 and woken == [True] * 197 and spare is False
    assert slow == 1  # nobody waits for a slow key's lease here: never above LEASE_S x its rate either


@pytest.fixture
def app(make_gateway):
    def make(**env):
        gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key", **env)
        set_gateway(gw)
        from functions_framework.aio import create_asgi_app

        return gw, create_asgi_app("quotes", MAIN)

    yield make
    set_gateway(None)


def _watch_leases(c, gw):
    """Counts the shared checks and the requests they charged, on the reader of the app's event loop."""
    from shared.api.access_async import async_access_for
    from shared.market.reader import reader_for

    async def checks():
        return async_access_for(gw, reader_for(gw))

    leases = c.portal.call(checks).leases
    seen = {"checks": 0, "charged": 0}
    def counting(real):
        def count(who, n):
            seen["checks"] += 1
            seen["charged"] += n
            real(who, n)

        return count

    leases.granted = counting(leases.granted)  # a lease asked for by a request
    leases.renewed = counting(leases.renewed)  # and one renewed ahead
    return seen


def test_a_slow_key_is_refused_at_its_rate(app):
    gw, asgi = app(INBOUND_RATE_PER_KEY="1")
    with TestClient(asgi) as c:
        started = time.monotonic()
        codes = [c.get("/?symbols=005930&deadline_ms=5000", headers=KEY).status_code for _ in range(10)]
        took = time.monotonic() - started
    # One request per second (a burst of one): never more than the time allows, refused with 429 otherwise.
    assert set(codes) <= {200, 429}
    assert codes.count(200) <= 1 + math.ceil(took)
    assert codes.count(429) >= 10 - 1 - math.ceil(took)


def test_a_busy_key_spends_leases_and_every_admitted_request_was_charged(app):
    gw, asgi = app(INBOUND_RATE_PER_KEY="100000")
    with TestClient(asgi) as c:
        assert c.get("/?symbols=005930&deadline_ms=5000", headers=KEY).status_code == 200
        seen = _watch_leases(c, gw)
        codes = [c.get("/?symbols=005930", headers=KEY).status_code for _ in range(300)]
    assert codes.count(200) == 300
    assert seen["checks"] < 100  # 300 requests, far fewer shared checks
    assert seen["charged"] >= 300 - LEASE_MAX  # admitted from leases charged before (the first one's rest)


def test_a_refused_key_is_refused_here_until_the_wait_the_shared_limit_named():
    clock = Clock()
    leases = RateLeases(clock)
    assert leases.refused_for("k") == 0
    leases.refused("k", 0.4)
    assert abs(leases.refused_for("k") - 0.4) < 1e-9 and leases.refused_for("other") == 0
    clock.t += 0.3
    assert abs(leases.refused_for("k") - 0.1) < 1e-9
    clock.t += 0.1
    assert leases.refused_for("k") == 0  # the shared limit may admit it again: ask it


def _as_key(app, work):
    """Run `work(checks, principal, scope)` on the quotes app's event loop, as the dev key with a high rate;
    (its result, the shared checks seen meanwhile)."""
    from shared.api import handlers as h
    from shared.api.access_async import async_access_for
    from shared.api.routes import ROUTES
    from shared.market.reader import reader_for

    gw, asgi = app(INBOUND_RATE_PER_KEY="100000")

    class Req:
        headers = {"X-API-Key": "test-dev-key"}

    with TestClient(asgi) as c:
        assert c.get("/?symbols=005930&deadline_ms=5000", headers=KEY).status_code == 200
        seen = _watch_leases(c, gw)

        async def run():
            checks = async_access_for(gw, reader_for(gw))
            scope = ROUTES.scope_of(h.quotes)
            return await work(checks, await checks.principal(Req, scope), scope)

        return c.portal.call(run), seen


def test_a_burst_of_one_key_asks_the_shared_limit_a_handful_of_times(app):
    async def burst(checks, principal, scope):
        await asyncio.sleep(LEASE_S)  # the first request's lease is over
        await asyncio.gather(*(checks.admit(principal, scope) for _ in range(1000)))

    _, seen = _as_key(app, burst)
    # A thousand requests at once: each admitted (none raised) from a few leases asked one at a time, whose
    # sizes double while they run out, not a thousand round trips queued for the connections.
    assert seen["checks"] <= 20
    assert seen["charged"] >= 1000


def test_a_busy_keys_lease_is_renewed_before_it_runs_out_for_its_demand():
    clock = Clock()
    leases = RateLeases(clock)
    leases.granted("slow", RENEW_MIN_SIZE - 1)
    clock.t += LEASE_S * 0.9
    while leases.take("slow"):
        assert not leases.renewal_due("slow")  # a slow key asks when it needs to
    leases.granted("k", 100)  # 99 left: one was the asking request's
    taken = 0
    while not leases.renewal_due("k"):
        assert leases.take("k")
        taken += 1
    assert 100 - 1 - taken <= 100 * RENEW_SHARE < 100 - taken  # due at the share left, not before
    clock.t += LEASE_S / 4  # spent in a quarter of the lease's time: demand for four times as many
    # (to one request: the demand is rounded up from a float)
    assert abs(leases.renewal_size("k", 100_000) - (min(LEASE_MAX, 4 * (taken + 1)) - (100 - 1 - taken))) <= 1
    assert leases.renewal_size("k", 1_000) == 1_000 * LEASE_S - (100 - 1 - taken)  # never above a lease's cap
    leases.begin("k")
    assert not leases.renewal_due("k")  # one request of the key asks at a time
    leases.renewed("k", 50)
    leases.end("k")
    assert sum(leases.take("k") for _ in range(1000)) == 50 + 100 - 1 - taken  # the new ones and those left
    # Near its end in time, a lease with requests left is renewed for its demand: what was left is kept.
    leases.granted("t", 100)
    spent = int(100 * (1 - RENEW_SHARE)) - 10  # more than the share left: not due by its requests
    for _ in range(spent):
        leases.take("t")
    assert not leases.renewal_due("t")
    clock.t += LEASE_S * (1 - RENEW_SHARE) + 1e-6  # (past the share left in time, whatever the float rounding)
    assert leases.renewal_due("t")
    assert abs(leases.renewal_size("t", 100_000) - (math.ceil((spent + 1) / (1 - RENEW_SHARE)) - (99 - spent))) <= 1
    clock.t += LEASE_S  # over: nothing to carry
    leases.renewed("t", 10)
    assert sum(leases.take("t") for _ in range(100)) == 10


def test_a_busy_key_does_not_stop_to_wait_for_its_next_lease(app):
    """Requests of one key arriving steadily: once its lease has grown, the next lease is asked for ahead, and
    no request waits for a round trip."""

    async def steady(checks, principal, scope):
        stopped = []
        for _ in range(120):
            at_once = [checks.admitted_locally(principal, scope) for _ in range(20)]
            stopped.append(at_once.count(False))
            await asyncio.gather(*(checks.admit(principal, scope) for n in range(at_once.count(False))))
            await asyncio.sleep(0.003)
        return stopped

    stopped, seen = _as_key(app, steady)
    assert sum(stopped[:40]) > 0  # while the lease grew, requests asked
    assert sum(stopped[60:]) == 0, str(stopped)  # then never: each lease was renewed before it ran out
    assert seen["charged"] >= 120 * 20 - sum(stopped) - LEASE_MAX  # and every admitted request was charged
