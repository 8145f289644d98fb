"""The token manager: one refresh fleet-wide, the 60 s issue guard, expiry from KIS's field, alerts."""

import threading
import time
from datetime import UTC, datetime

import pytest

from shared.clock import SYSTEM_CLOCK, FakeClock
from shared.cloud.token_store import MemoryTokenStore, RedisTokenStore, StoredToken
from shared.kis.errors import KISServerError, KISTokenIssueThrottledError
from shared.kis.models import AccessToken
from shared.market.token import TokenManager, TokenUnavailableError


class Issuer:
    def __init__(self, clock, lifetime=86400.0, delay=0.0):
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.calls = 0
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
            n = self.calls
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        now = self.clock.time()
        return AccessToken(value=f"tok-{n}", expires_at=datetime.fromtimestamp(now + self.lifetime, UTC),
                           issued_at=datetime.fromtimestamp(now, UTC))


def manager(redis_client, redis_prefix, store=None, clock=None, issuer=None, alerts=None, **kw):
    clock = clock or FakeClock(time.time())
    issuer = issuer or Issuer(clock)
    store = store or MemoryTokenStore()
    tm = TokenManager(store, issuer, redis_client, prefix=redis_prefix, app_key_id="app1", margin_s=300, clock=clock,
                      alert=(lambda e, d: alerts.append((e, d))) if alerts is not None else None, **kw)
    return tm, issuer, store, clock


def test_first_read_issues_and_later_reads_use_memory(redis_client, redis_prefix):
    tm, issuer, store, _ = manager(redis_client, redis_prefix)
    assert tm.get() == "tok-1"
    assert tm.get() == "tok-1" and issuer.calls == 1
    assert store.read().access_token == "tok-1"


def test_expiry_comes_from_kis_not_from_now_plus_a_day(redis_client, redis_prefix):
    clock = FakeClock(time.time())
    issuer = Issuer(clock, lifetime=3 * 3600)  # a re-issued token keeps its first expiry
    tm, _, store, _ = manager(redis_client, redis_prefix, clock=clock, issuer=issuer)
    tm.get()
    assert store.read().expires_at == pytest.approx(clock.time() + 3 * 3600, abs=1)


def test_scheduled_refresh_only_within_the_margin(redis_client, redis_prefix):
    tm, issuer, _, clock = manager(redis_client, redis_prefix)
    tm.get()
    assert tm.refresh_if_due() is False and issuer.calls == 1
    clock.advance(86400 - 299)  # inside the 5-minute margin
    redis_client.delete(f"{redis_prefix}:token:app1:issued")
    assert tm.refresh_if_due() is True and issuer.calls == 2
    assert tm.get() == "tok-2"


def test_many_threads_one_issue(redis_client, redis_prefix):
    clock = SYSTEM_CLOCK  # the waiting instances wait in real time for the one that issues
    issuer = Issuer(clock, delay=0.2)
    store = RedisTokenStore(redis_client, redis_prefix)
    managers = [manager(redis_client, redis_prefix, store=store, clock=clock, issuer=issuer)[0] for _ in range(4)]
    got = []
    threads = [threading.Thread(target=lambda m=m: got.append(m.get())) for m in managers for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert issuer.calls == 1
    assert got == ["tok-1"] * 20


def test_issue_guard_keeps_one_issue_per_minute(redis_client, redis_prefix):
    alerts = []
    tm, issuer, _, _ = manager(redis_client, redis_prefix, alerts=alerts)
    tm.get()
    with pytest.raises(TokenUnavailableError, match="once per 60 s"):
        tm.on_rejected("tok-1")  # KIS refused the token within the minute: no second issue yet
    assert issuer.calls == 1
    assert alerts and alerts[0][0] == "token_refresh_failed"


def test_kis_throttle_answer_sets_the_guard(redis_client, redis_prefix):
    alerts = []
    tm, issuer, _, _ = manager(redis_client, redis_prefix, alerts=alerts)
    issuer.fail = KISTokenIssueThrottledError(msg_cd="EGW00133")
    with pytest.raises(TokenUnavailableError):
        tm.get()
    assert redis_client.exists(f"{redis_prefix}:token:app1:issued")
    assert alerts[-1][0] == "token_refresh_failed"


def test_issue_failure_stops_calls_and_alerts(redis_client, redis_prefix):
    alerts = []
    tm, issuer, _, _ = manager(redis_client, redis_prefix, alerts=alerts)
    issuer.fail = KISServerError(msg_cd="EGW00001")
    with pytest.raises(TokenUnavailableError, match="token issue failed"):
        tm.get()
    assert tm.last_error and alerts


def test_rejected_token_is_replaced_after_the_guard(redis_client, redis_prefix):
    tm, issuer, store, _ = manager(redis_client, redis_prefix)
    tm.get()
    redis_client.delete(f"{redis_prefix}:token:app1:issued")
    tm.on_rejected("tok-1")
    assert issuer.calls == 2 and tm.get() == "tok-2" and store.read().access_token == "tok-2"


def test_scheduled_refresh_lands_before_the_margin_even_between_runs(redis_client, redis_prefix):
    tm, issuer, _, clock = manager(redis_client, redis_prefix)
    tm.get()
    clock.advance(86400 - 300 - 1800 + 1)  # the next run (30 min on) would be inside the margin
    redis_client.delete(f"{redis_prefix}:token:app1:issued")
    assert tm.refresh_if_due() is False
    assert tm.refresh_if_due(every_s=1800) is True and issuer.calls == 2


def test_token_never_in_repr_or_errors():
    tok = StoredToken(access_token="supersecrettoken", expires_at=1.0, issued_at=0.0)
    assert "supersecrettoken" not in repr(tok)
