"""A drain that waits for a rate grant keeps its claim: the lease is renewed and the wait never outlasts it."""

from __future__ import annotations

import time

import pytest

from shared.config import SettingsError, load_settings


def test_a_long_limiter_wait_never_lets_another_drain_claim_the_batch(make_gateway, monkeypatch):
    gw = make_gateway(GATEWAY_CLAIM_LEASE_S="2.5", KIS_HTTP_TIMEOUT_S="1", RETRY_MAX_DELAY_S="1",
                      RETRY_BASE_DELAY_S="0.1", GATEWAY_COLLECT_WINDOW_MS="0")
    pend = gw.drain.pending["daily"]
    pend.add(["005930"])
    real_acquire = gw.limiter.acquire
    waits: list[float] = []
    stolen: list[list[str]] = []

    def slow_acquire(call_class, deadline_s=None):
        # The limiter makes this drain wait as long as it is allowed to; meanwhile another drainer tries.
        waits.append(deadline_s)
        end = time.monotonic() + (deadline_s or 0)
        while time.monotonic() < end:
            stolen.append(pend.claim(5, "other-drain"))
            time.sleep(0.2)
        return real_acquire(call_class, 2.0)

    monkeypatch.setattr(gw.limiter, "acquire", slow_acquire)
    report = gw.drain.drain("daily", deadline_s=30)
    assert waits and all(w is not None and w <= 2.5 - 0.625 + 1e-9 for w in waits), waits
    assert len(stolen) >= 5 and all(s == [] for s in stolen), stolen  # never claimable during the wait
    assert report.fetched == 1 and pend.size() == 0


def test_lease_shorter_than_one_call_and_backoff_is_refused():
    with pytest.raises(SettingsError, match="GATEWAY_CLAIM_LEASE_S"):
        load_settings({"GATEWAY_CLAIM_LEASE_S": "5", "KIS_HTTP_TIMEOUT_S": "5"})


def test_lease_is_renewed_while_work_goes_on(redis_client, redis_prefix):
    from shared.market.pending import PendingSymbols

    pend = PendingSymbols(redis_client, "info", prefix=redis_prefix, lease_s=0.6)
    pend.add(["005930"])
    assert pend.claim(1, "a") == ["005930"]
    for _ in range(4):
        time.sleep(0.3)
        assert pend.renew(["005930"], "a") == 1
        assert pend.claim(1, "b") == []
    assert pend.renew(["005930"], "b") == 0  # only the owner renews
    time.sleep(0.8)
    assert pend.claim(1, "b") == ["005930"]  # not renewed: claimable again
