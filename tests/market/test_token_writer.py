"""One token writer: readers never issue (they ask the refresh function and report token_unavailable), the writer
refreshes single-flight, and the token's state is readable without the token secret."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from shared.clock import FakeClock
from shared.cloud.grants import AccessDenied, Denied
from shared.cloud.token_store import MemoryTokenStore, StoredToken
from shared.gateway import set_gateway
from shared.kis.errors import KISConfigError
from shared.market.breaker import MemoryBreakerStorage, SharedBreaker
from shared.market.token import TokenManager, TokenUnavailableError
from tests.entry_points import entry_client
from tests.market.test_token_manager import Issuer

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")


def make(redis_client, redis_prefix, *, writer, store=None, issuer=None, requests=None, clock=None):
    clock = clock or FakeClock(time.time())
    asked = requests if requests is not None else []
    tm = TokenManager(store or MemoryTokenStore(), issuer or Issuer(clock), redis_client, prefix=redis_prefix,
                      app_key_id="app1", margin_s=300, clock=clock, writer=writer, request_refresh=asked.append)
    return tm, asked


def test_a_reader_never_issues_it_asks_for_a_refresh(redis_client, redis_prefix):
    issuer = Issuer(FakeClock(time.time()))
    reader, asked = make(redis_client, redis_prefix, writer=False, issuer=issuer)
    try:
        reader.get()
    except TokenUnavailableError as exc:
        assert "refresh was requested" in str(exc)
    else:
        raise AssertionError("a reader without a token must raise TokenUnavailableError")
    assert issuer.calls == 0 and len(asked) == 1
    assert reader.status()["state"] == "none yet"


def test_a_rejected_token_is_not_reused_by_a_reader(redis_client, redis_prefix):
    clock = FakeClock(time.time())
    store = MemoryTokenStore()
    store.write(StoredToken("bad-token", clock.time() + 3600, clock.time()))
    reader, asked = make(redis_client, redis_prefix, writer=False, store=store, clock=clock)
    assert reader.get() == "bad-token"
    for _ in range(2):
        try:
            reader.on_rejected("bad-token")
        except TokenUnavailableError:
            pass
        else:
            raise AssertionError("on_rejected of a reader raises")
    try:
        reader.get()
    except TokenUnavailableError:
        pass
    else:
        raise AssertionError("the rejected token must not be served again")
    assert asked  # the refresh function was asked
    store.write(StoredToken("good-token", clock.time() + 7200, clock.time()))
    assert reader.get() == "good-token"


def test_the_writer_refreshes_once_for_many_waiters_and_publishes_the_times(redis_client, redis_prefix):
    clock = FakeClock(time.time())
    issuer = Issuer(clock, delay=0.3)
    writer, _ = make(redis_client, redis_prefix, writer=True, issuer=issuer, clock=clock)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(writer.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert issuer.calls == 1 and got == ["tok-1"] * 8
    # Status for functions without the secret: read from what the writer published in Redis.
    status_reader = TokenManager(Denied("KIS token secret", "health"), issuer, redis_client,  # type: ignore[arg-type]
                                 prefix=redis_prefix, app_key_id="app1", margin_s=300, clock=clock, writer=False)
    status = status_reader.status()
    assert status["state"] == "valid" and status["expires_in_s"] > 0
    try:
        status_reader.get()
    except AccessDenied:
        pass  # a function without the grant fails loudly where it would need the secret
    else:
        raise AssertionError("reading the token without the grant must fail")


def test_token_and_config_errors_do_not_count_toward_the_breaker():
    breaker = SharedBreaker(MemoryBreakerStorage("t"), fail_max=1, reset_timeout_s=60)
    for exc in (TokenUnavailableError("no token"), KISConfigError("no account")):
        try:
            breaker.call(lambda e=exc: (_ for _ in ()).throw(e))
        except type(exc):
            pass
    assert breaker.state == "closed"


def test_a_reader_function_answers_503_token_unavailable(make_gateway):
    gw = make_gateway(GATEWAY_FUNCTION="balance", GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    try:
        r = entry_client("balance").get("/", headers={"X-API-Key": "test-dev-key"})
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "token_unavailable"
        assert r.headers["Retry-After"]
        assert gw.breaker.state == "closed"
    finally:
        set_gateway(None)


def test_a_read_with_nothing_cached_and_no_token_is_503_token_unavailable(make_gateway):
    # One process with the read handler and an in-process drain that holds (only) token read access.
    gw = make_gateway(GATEWAY_FUNCTION="drain", GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key",
                      REQUEST_DEADLINE_S="1.5")
    set_gateway(gw)
    try:
        r = entry_client("quotes").get("/?symbols=005930", headers={"X-API-Key": "test-dev-key"})
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "token_unavailable"
        assert gw.breaker.state == "closed"
    finally:
        set_gateway(None)
