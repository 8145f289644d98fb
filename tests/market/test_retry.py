import pytest

from shared.clock import FakeClock
from shared.kis.errors import (
    KISBusinessError,
    KISConfigError,
    KISRateLimitError,
    KISServerError,
    KISTimeoutError,
    KISTokenExpiredError,
)
from shared.market.retry import RetryPolicy


def flaky(errors, result="ok"):
    calls = []

    def fn():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def policy(**kw):
    return RetryPolicy(clock=FakeClock(), **kw)


@pytest.mark.parametrize("exc", [KISRateLimitError(msg_cd="EGW00201"), KISServerError(), KISTimeoutError()])
def test_retryable_errors_are_retried(exc):
    fn, calls = flaky([exc, exc])
    assert policy().run(fn) == "ok"
    assert len(calls) == 3


def test_attempts_are_bounded():
    fn, calls = flaky([KISServerError() for _ in range(10)])
    with pytest.raises(KISServerError):
        policy(attempts=3).run(fn)
    assert len(calls) == 3


def test_total_time_is_bounded():
    clock = FakeClock()
    fn, calls = flaky([KISServerError() for _ in range(10)])
    p = RetryPolicy(attempts=10, base_delay_s=1.0, max_delay_s=1.0, total_s=2.5, clock=clock)
    start = clock.monotonic()
    with pytest.raises(KISServerError):
        p.run(fn)
    assert clock.monotonic() - start <= 2.5


def test_backoff_grows_and_is_jittered():
    p = policy(base_delay_s=0.1, max_delay_s=10)
    waits = [max(p.delay(4, KISServerError()) for _ in range(50)), max(p.delay(1, KISServerError()) for _ in range(50))]
    assert waits[0] > waits[1]
    assert all(p.delay(1, KISRateLimitError()) >= 0.2 for _ in range(20))


@pytest.mark.parametrize("exc", [KISConfigError(msg_cd="EGW00103"), KISBusinessError(msg_cd="APBK0406")])
def test_config_and_business_errors_surface_at_once(exc):
    fn, calls = flaky([exc])
    with pytest.raises(type(exc)):
        policy().run(fn)
    assert len(calls) == 1


def test_token_error_refreshes_once_and_retries_once():
    refreshed = []
    fn, calls = flaky([KISTokenExpiredError(msg_cd="EGW00123")])
    assert policy().run(fn, refresh_token=lambda: refreshed.append(1)) == "ok"
    assert refreshed == [1] and len(calls) == 2

    fn, calls = flaky([KISTokenExpiredError(), KISTokenExpiredError()])
    with pytest.raises(KISTokenExpiredError):
        policy().run(fn, refresh_token=lambda: refreshed.append(1))
    assert len(calls) == 2


def test_rate_limit_is_reported():
    seen = []
    fn, _ = flaky([KISRateLimitError(msg_cd="EGW00201")])
    policy().run(fn, on_rate_limited=lambda: seen.append(1))
    assert seen == [1]


def test_deadline_stops_retries():
    clock = FakeClock()
    fn, calls = flaky([KISServerError() for _ in range(10)])
    p = RetryPolicy(attempts=10, base_delay_s=0.5, max_delay_s=0.5, total_s=60, clock=clock)
    with pytest.raises(KISServerError):
        p.run(fn, deadline=clock.monotonic() + 0.0001)
    assert len(calls) == 1
